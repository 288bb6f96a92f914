// Command runnel is runnel's one binary. Each subcommand lives in a file of
// its own and registers in the commands table below.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand: run parses its own flags from args.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands, in the order usage shows them.
var commands = []command{
	{"serve", "run the bundled Kafka-compatible log", runServe},
	{"topics", "list, describe, create, delete and alter topics", runTopics},
	{"produce", "produce lines from stdin to a topic", runProduce},
	{"consume", "print a topic's records", runConsume},
	{"groups", "list and describe consumer groups, reset their offsets", runGroups},
	{"tables", "read a group's table", runTables},
	{"users", "create, delete and list SASL/SCRAM users", runUsers},
	{"acls", "add, remove and list ACLs", runACLs},
}

// errUsage reports a command line mistake that the usage text explains; it
// exits with status 2, as flag does.
var errUsage = errors.New("usage")

// commandError is an error of a subcommand of a command, such as "topics
// create", which run names in its message instead of the command alone.
type commandError struct {
	name string
	err  error
}

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "-help" || name == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		var ce *commandError
		if errors.As(err, &ce) {
			name = ce.name
		}
		fmt.Fprintf(stderr, "runnel %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stderr, "runnel: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

// wantsHelp reports whether a subcommand's flags ask for help, which is
// printed to stdout with exit status 0 rather than to stderr as a mistake.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--h", "--help":
			return true
		}
	}
	return false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: runnel <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "runnel <command> --help" for a command's flags.`)
	fmt.Fprintln(w, `Every command but serve talks to runnel serve or any Kafka cluster given by --brokers (default 127.0.0.1:9092).`)
}
