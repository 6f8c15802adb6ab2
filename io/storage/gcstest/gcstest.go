// Package gcstest runs an in-process Google Cloud Storage emulator
// (github.com/fsouza/fake-gcs-server) for tests of code that uses gs:// URIs.
package gcstest

import (
	"fmt"
	"net/url"
	"os"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

// Server is a running emulator.
type Server struct {
	*fakestorage.Server
	// Host is the emulator's host:port, as STORAGE_EMULATOR_HOST wants it.
	Host string
}

// Start starts an emulator on 127.0.0.1 and sets STORAGE_EMULATOR_HOST to
// it. The io/storage client reads that variable once, when it is first
// used: call Start before any gs:// access, e.g. in TestMain.
func Start() (*Server, error) {
	// PublicHost must equal Host, or object reads fail while listing works.
	s, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1",
	})
	if err != nil {
		return nil, fmt.Errorf("gcstest: starting fake-gcs-server: %w", err)
	}
	u, err := url.Parse(s.URL())
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("gcstest: %w", err)
	}
	if err := os.Setenv("STORAGE_EMULATOR_HOST", u.Host); err != nil {
		s.Stop()
		return nil, fmt.Errorf("gcstest: %w", err)
	}
	return &Server{Server: s, Host: u.Host}, nil
}

// Put stores an object, creating its bucket if needed.
func (s *Server) Put(bucket, name string, data []byte) {
	s.CreateObject(fakestorage.Object{
		ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: name},
		Content:     data,
	})
}
