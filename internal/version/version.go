// Package version holds the multiad release version.
package version

// Version is the multiad version written into model bundles and reports.
const Version = "0.1.0"
