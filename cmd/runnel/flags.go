package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// newFlagSet returns the flag set of a subcommand. name is the full command
// ("runnel topics create"), which prefixes usage mistakes; synopsis is the
// usage line after "Usage: " and about the paragraph under it.
func newFlagSet(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", synopsis, strings.TrimSpace(about))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseArgs parses args with fs and returns the positional arguments. Flags
// may come before, between or after them, as in `runnel topics create t
// --partitions 3`, which the flag package alone would take as four
// positional arguments; "--" ends the flags. A help flag prints the usage to
// stdout and returns flag.ErrHelp; a mistake, which flag has already
// printed with the usage to fs's output, returns errUsage.
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	if wantsHelp(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil, flag.ErrHelp
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// flag stops either at "--", which it consumes, or at the first
		// argument that is not a flag, which it leaves. (A flag given "--"
		// as its separate value, `--key-sep --`, looks like the former; the
		// form --key-sep=-- is unambiguous.)
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError prints a command line mistake and the usage to fs's output,
// and returns errUsage, which exits with status 2.
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return errUsage
}

// keyValue is one k=v of a repeated flag.
type keyValue struct{ key, value string }

// keyValues is a repeatable flag of k=v pairs, kept in the order given.
type keyValues []keyValue

// String implements flag.Value.
func (kvs *keyValues) String() string {
	if kvs == nil {
		return ""
	}
	s := make([]string, len(*kvs))
	for i, kv := range *kvs {
		s[i] = kv.key + "=" + kv.value
	}
	return strings.Join(s, ",")
}

// Set implements flag.Value.
func (kvs *keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not of the form key=value", s)
	}
	*kvs = append(*kvs, keyValue{k, v})
	return nil
}

// stringList is a repeatable flag of plain values, kept in the order given.
type stringList []string

// String implements flag.Value.
func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

// Set implements flag.Value.
func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// subcommands dispatches `runnel <parent> <sub> ...` to one of subs. Errors
// of a subcommand are wrapped in a commandError, so that run names the
// subcommand in its message.
func subcommands(ctx context.Context, parent, about string, subs []command, args []string, stdout, stderr io.Writer) error {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: runnel %s <command> [flags]\n\n%s\n\nCommands:\n", parent, strings.TrimSpace(about))
		for _, c := range subs {
			fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
		}
		fmt.Fprintf(w, "\nRun \"runnel %s <command> --help\" for a command's flags.\n", parent)
	}
	if len(args) == 0 {
		fmt.Fprintf(stderr, "runnel %s: missing command\n\n", parent)
		usage(stderr)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--h", "--help", "help":
		usage(stdout)
		return flag.ErrHelp
	}
	for _, c := range subs {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		if err == nil || errors.Is(err, flag.ErrHelp) || errors.Is(err, errUsage) {
			return err
		}
		return &commandError{name: parent + " " + c.name, err: err}
	}
	fmt.Fprintf(stderr, "runnel %s: unknown command %q\n\n", parent, args[0])
	usage(stderr)
	return errUsage
}
