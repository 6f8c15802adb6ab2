// Package dicomweb reads from and writes to DICOMweb archives (PACS,
// Orthanc, Google Cloud Healthcare API): QIDO-RS queries, WADO-RS retrieval
// of instances and STOW-RS storage.
//
// # URIs
//
// A DICOMweb location is the service's base URL with the scheme replaced:
//
//	dicomweb+http://127.0.0.1:8042/dicom-web          plain HTTP
//	dicomweb+https://pacs.example.org/wado            HTTPS
//	dicomweb://pacs.example.org/wado                  HTTPS (short form)
//
// followed by an optional scope and query:
//
//	BASE[/studies/S[/series/R[/instances/I]]][?KEY=VALUE&...]
//
// A URI that names one instance (…/studies/S/series/R/instances/I, no
// query) is a file: reading it retrieves the instance with WADO-RS as
// application/dicom in its stored transfer syntax. Any other URI is a
// collection: listing it runs QIDO-RS study → series → instance queries
// inside the scope, with the query's keys as matching attributes, and
// returns one instance URI per instance. Keys are DICOM keywords or tags
// (PatientID, StudyDate=20020101-20021231, ModalitiesInStudy=MR,
// StudyInstanceUID, AccessionNumber, Modality, SeriesInstanceUID, …);
// values use QIDO-RS matching (ranges, '*' and '?' wildcards, UID lists).
// Study-level keys go to the study query, series-level keys (Modality,
// SeriesInstanceUID, SeriesNumber, SeriesDescription, BodyPartExamined) to
// the series query, instance-level keys (SOPInstanceUID, SOPClassUID,
// InstanceNumber) to the instance query; other keys to the study query.
//
// Importing this package registers the three schemes with io/storage, so
// that storage.List, Glob, Stat and ReadFile (and so every multiad input)
// accept DICOMweb URIs. Glob is List: a DICOMweb query is the pattern.
//
// # Authentication
//
// The process-wide client sends "Authorization: Bearer TOKEN" when the
// environment variable MULTIAD_DICOMWEB_TOKEN is set (or SetToken was
// called). Without a token, requests to healthcare.googleapis.com use
// Google Application Default Credentials; other servers get no
// Authorization header.
//
// # Robustness
//
// Requests are retried with exponential backoff on network errors, 429 and
// 5xx responses (honouring Retry-After); responses are size-limited;
// listing fetches instances of several series at once, up to a bound.
package dicomweb

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// Location is a parsed DICOMweb URI.
type Location struct {
	// Scheme is the URI scheme as written (dicomweb, dicomweb+http, dicomweb+https).
	Scheme string
	// Base is the service's base URL (http:// or https://, no trailing '/').
	Base string
	// Study, Series and Instance are the UIDs of the scope ("" when absent).
	Study, Series, Instance string
	// Query holds the matching keys.
	Query url.Values
}

// Schemes are the URI schemes this package registers with io/storage.
var Schemes = []string{"dicomweb", "dicomweb+http", "dicomweb+https"}

// Parse parses a DICOMweb URI.
func Parse(uri string) (Location, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return Location{}, fmt.Errorf("dicomweb: %w", err)
	}
	var l Location
	l.Scheme = strings.ToLower(u.Scheme)
	httpScheme := ""
	switch l.Scheme {
	case "dicomweb", "dicomweb+https":
		httpScheme = "https"
	case "dicomweb+http":
		httpScheme = "http"
	default:
		return Location{}, fmt.Errorf("dicomweb: %q: scheme must be one of %s", uri, strings.Join(Schemes, ", "))
	}
	if u.Host == "" {
		return Location{}, fmt.Errorf("dicomweb: %q: no host", uri)
	}
	if u.User != nil {
		return Location{}, fmt.Errorf("dicomweb: %q: credentials in the URI are not supported; use MULTIAD_DICOMWEB_TOKEN", uri)
	}
	if u.Fragment != "" {
		return Location{}, fmt.Errorf("dicomweb: %q: unexpected fragment", uri)
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) == 1 && segs[0] == "" {
		segs = nil
	}
	// The scope is the trailing studies/S[/series/R[/instances/I]].
	base := segs
	for i := range segs {
		if segs[i] == "studies" && scopeOK(segs[i:]) {
			base = segs[:i]
			rest := segs[i:]
			l.Study = rest[1]
			if len(rest) >= 4 {
				l.Series = rest[3]
			}
			if len(rest) == 6 {
				l.Instance = rest[5]
			}
			break
		}
	}
	if l.Study == "" && len(segs) >= 2 && segs[len(segs)-2] == "studies" {
		return Location{}, fmt.Errorf("dicomweb: %q: %q is not a UID", uri, segs[len(segs)-1])
	}
	l.Base = httpScheme + "://" + u.Host
	if len(base) > 0 {
		l.Base += "/" + strings.Join(base, "/")
	}
	l.Query = u.Query()
	if len(l.Query) > 0 && l.Instance != "" {
		return Location{}, fmt.Errorf("dicomweb: %q: an instance URI takes no query", uri)
	}
	return l, nil
}

// scopeOK reports whether segs is studies/S, studies/S/series/R or
// studies/S/series/R/instances/I with UIDs S, R, I (so that a base path
// with a segment named "studies" stays part of the base).
func scopeOK(segs []string) bool {
	switch len(segs) {
	case 2:
		return validUID(segs[1])
	case 4:
		return validUID(segs[1]) && segs[2] == "series" && validUID(segs[3])
	case 6:
		return validUID(segs[1]) && segs[2] == "series" && validUID(segs[3]) && segs[4] == "instances" && validUID(segs[5])
	}
	return false
}

// validUID reports whether s is a DICOM UID: digits and dots, at most 64.
func validUID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// IsInstance reports whether l names a single instance.
func (l Location) IsInstance() bool { return l.Instance != "" }

// URL returns the HTTP URL of l's scope under the base, with extra path
// elements appended.
func (l Location) URL(elem ...string) string {
	p := []string{}
	if l.Study != "" {
		p = append(p, "studies", l.Study)
	}
	if l.Series != "" {
		p = append(p, "series", l.Series)
	}
	if l.Instance != "" {
		p = append(p, "instances", l.Instance)
	}
	p = append(p, elem...)
	if len(p) == 0 {
		return l.Base
	}
	return l.Base + "/" + path.Join(p...)
}

// String returns l as a URI in its own scheme.
func (l Location) String() string {
	u := l.URL()
	_, rest, _ := strings.Cut(u, "://")
	s := l.Scheme + "://" + rest
	if len(l.Query) > 0 {
		s += "?" + l.Query.Encode()
	}
	return s
}

// InstanceURI returns the URI of one instance under l's base, in l's scheme.
func (l Location) InstanceURI(study, series, instance string) string {
	return Location{Scheme: l.Scheme, Base: l.Base, Study: study, Series: series, Instance: instance}.String()
}

// queryLevel says at which QIDO level a key is matched.
func queryLevel(key string) string {
	switch strings.ToUpper(key) {
	case "MODALITY", "00080060", "SERIESINSTANCEUID", "0020000E", "SERIESNUMBER", "00200011",
		"SERIESDESCRIPTION", "0008103E", "BODYPARTEXAMINED", "00180015", "SERIESDATE", "00080021":
		return "series"
	case "SOPINSTANCEUID", "00080018", "SOPCLASSUID", "00080016", "INSTANCENUMBER", "00200013":
		return "instances"
	}
	return "studies"
}

// queryParams are QIDO-RS parameters that are not matching keys.
var queryParams = map[string]bool{"limit": true, "offset": true, "fuzzymatching": true, "includefield": true}

// split divides a query into the study, series and instance queries.
func split(q url.Values) (map[string]url.Values, error) {
	out := map[string]url.Values{"studies": {}, "series": {}, "instances": {}}
	for k, vs := range q {
		if queryParams[strings.ToLower(k)] {
			return nil, fmt.Errorf("dicomweb: query parameter %q is set by multiad, not the URI", k)
		}
		if k == "" {
			return nil, fmt.Errorf("dicomweb: empty query key")
		}
		for _, v := range vs {
			out[queryLevel(k)].Add(k, v)
		}
	}
	return out, nil
}
