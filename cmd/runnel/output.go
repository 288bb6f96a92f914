package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"
)

// outputFormat is the --output flag of listing and describing commands:
// aligned tables for people, JSON for scripts.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
)

// String implements flag.Value.
func (o *outputFormat) String() string { return string(*o) }

// Set implements flag.Value.
func (o *outputFormat) Set(s string) error {
	switch f := outputFormat(s); f {
	case outputTable, outputJSON:
		*o = f
		return nil
	}
	return fmt.Errorf("%q is neither table nor json", s)
}

// addOutputFlag declares --output.
func addOutputFlag(fs *flag.FlagSet) *outputFormat {
	o := outputTable
	fs.Var(&o, "output", "output `format`: table (aligned columns, for people) or json (for scripts)")
	return &o
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// table writes aligned columns: cells separated by two spaces, each column
// as wide as its widest cell.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

// row adds a row; cells should already be printable (see printable).
func (t *table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// flush writes the table out.
func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// printable returns s as it can sit in a table cell: unchanged if it is
// valid UTF-8 of printable characters, else Go-quoted, so that a tab, a
// newline or a stray byte in a key or value cannot break the columns.
// Empty cells are shown as "-".
func printable(s string) string {
	if s == "" {
		return "-"
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return strconv.Quote(s)
	}
	return s
}

// itoa formats an integer cell.
func itoa[T ~int | ~int16 | ~int32 | ~int64](n T) string { return strconv.FormatInt(int64(n), 10) }

// int32List formats a list of node ids as "0,1,2".
func int32List(ns []int32) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = itoa(n)
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}
