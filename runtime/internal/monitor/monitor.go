// Package monitor holds the runtime's monitor page: an HTML page, its
// style and its script, which draws the topology as a graph from the
// runtime's JSON description, shows the partitions the instance owns and
// queries tables, in plain JavaScript with no library, so that the page
// works where the runtime runs, offline included. The runtime serves them
// from Assets, embedded in the binary.
package monitor

import "embed"

// Assets holds index.html, monitor.js and monitor.css, under assets/.
//
//go:embed assets
var Assets embed.FS
