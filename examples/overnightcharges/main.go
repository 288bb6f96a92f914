// Command overnightcharges shows an end-of-day job on runnel tables: on a
// log embedded in the process, trades open and close positions in a
// positions table; at end of day every open position is charged overnight
// funding at its instrument's rate, looked up in a rates table, and the
// charges go to a ledger whose group keeps account balances. It prints the
// charges and the balances, checks them against a calculation made here
// without the stream processor and exits 0 if they match, 1 if not.
//
//	go run ./examples/overnightcharges
//
// The funding convention: one night of ACT/360 interest on the position's
// value at the close,
//
//	charge = −quantity × close price × annual rate / 360
//
// so a long position pays (a debit) and a short one receives (a credit).
// Money is integer cents and rates integer basis points (1 bp = 0.01%), so
// nothing drifts: the one division is rounded to the cent, halves away
// from zero.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

// Rate is an instrument's end-of-day terms.
type Rate struct {
	ClosePriceCents int64 `json:"close_price_cents"`
	AnnualRateBP    int64 `json:"annual_rate_bp"`
}

// Trade buys (a positive quantity) or sells (a negative one) an instrument
// for an account. Funding is charged on the value at the close, so the
// trade's price plays no part here and is left out.
type Trade struct {
	Account    string `json:"account"`
	Instrument string `json:"instrument"`
	Quantity   int64  `json:"quantity"`
}

// Position is an account's holding of an instrument: long if Quantity is
// positive, short if negative. A closed position is deleted.
type Position struct {
	Account    string `json:"account"`
	Instrument string `json:"instrument"`
	Quantity   int64  `json:"quantity"`
}

// positionKey keys trades and positions: one row per account and
// instrument.
func positionKey(account, instrument string) string { return account + "/" + instrument }

// EndOfDay closes the business day Date.
type EndOfDay struct {
	Date string `json:"date"`
}

// Kinds of ledger entries.
const (
	deposit = "deposit"
	funding = "funding"
)

// Entry is a line of an account's ledger: a deposit, or the overnight
// funding of a position with the terms it was charged at. AmountCents is
// signed: credits are positive, debits negative.
type Entry struct {
	Account     string `json:"account"`
	Kind        string `json:"kind"`
	Date        string `json:"date"`
	AmountCents int64  `json:"amount_cents"`

	Instrument      string `json:"instrument,omitempty"`
	Quantity        int64  `json:"quantity,omitempty"`
	ClosePriceCents int64  `json:"close_price_cents,omitempty"`
	AnnualRateBP    int64  `json:"annual_rate_bp,omitempty"`
}

// overnightFunding returns the ledger entry that funds position p for the
// night after date, at rate r.
func overnightFunding(p Position, r Rate, date string) Entry {
	return Entry{
		Account: p.Account, Kind: funding, Date: date,
		AmountCents: fundingCents(p.Quantity, r.ClosePriceCents, r.AnnualRateBP),
		Instrument:  p.Instrument, Quantity: p.Quantity, ClosePriceCents: r.ClosePriceCents, AnnualRateBP: r.AnnualRateBP,
	}
}

// fundingCents is −quantity × close × rate / 360 in cents, for a close in
// cents and a rate in basis points.
func fundingCents(quantity, closeCents, rateBP int64) int64 {
	return -divRound(quantity*closeCents*rateBP, 10_000*360)
}

// divRound returns a/b rounded to the nearest integer, halves away from
// zero; b is positive.
func divRound(a, b int64) int64 {
	if a < 0 {
		return -divRound(-a, b)
	}
	return (a + b/2) / b
}

var (
	rateUpdates = topology.NewTopic("rate-updates", processor.String, processor.JSON[Rate]())
	trades      = topology.NewTopic("trades", processor.String, processor.JSON[Trade]())
	eod         = topology.NewTopic("eod", processor.String, processor.JSON[EndOfDay]())
	ledger      = topology.NewTopic("ledger", processor.String, processor.JSON[Entry]())
)

// rateTable is the group whose table holds each instrument's latest rate.
func rateTable() *topology.Group[string, Rate] {
	g := topology.NewGroup("rates", processor.String, processor.JSON[Rate]())
	topology.Input(g, rateUpdates, func(ctx processor.Context[string, Rate], _ string, r Rate) error {
		return ctx.SetValue(r)
	})
	return g
}

// positionBook is the group whose table holds the open positions, keyed
// by positionKey. At end of day it charges every one of them.
func positionBook(rates *topology.Group[string, Rate]) *topology.Group[string, Position] {
	g := topology.NewGroup("positions", processor.String, processor.JSON[Position]())
	// Rates are keyed by instrument and positions by account and
	// instrument, so the two tables are not co-partitioned: a position
	// reads its rate through a lookup (a view of the whole rates table),
	// not a join.
	rateOf := topology.Lookup(g, rates)
	ledgerOut := topology.Output(g, ledger)

	topology.Input(g, trades, func(ctx processor.Context[string, Position], _ string, t Trade) error {
		p, _ := ctx.Value()
		p.Account, p.Instrument = t.Account, t.Instrument
		p.Quantity += t.Quantity
		if p.Quantity == 0 {
			return ctx.Delete() // closed: nothing left to fund
		}
		return ctx.SetValue(p)
	})

	// An end-of-day record reaches one partition, and Rows visits the
	// positions of that partition only: endOfDay sends one to every
	// partition. Under at-least-once delivery a replayed end of day
	// charges again; a real ledger would drop entries whose (account,
	// instrument, date) it has already booked.
	topology.Input(g, eod, func(ctx processor.Context[string, Position], _ string, e EndOfDay) error {
		return ctx.Rows(func(_ string, p Position) error {
			r, ok := rateOf.Get(ctx, p.Instrument)
			if !ok {
				// Charging nothing would be silently wrong: fail the
				// record, and with it the run.
				return fmt.Errorf("end of day %s: no rate for %s, held by %s", e.Date, p.Instrument, p.Account)
			}
			return ledgerOut.Emit(ctx, p.Account, overnightFunding(p, r, e.Date))
		})
	})
	return g
}

// balances is the group whose table holds each account's balance in cents.
func balances() *topology.Group[string, int64] {
	g := topology.NewGroup("balances", processor.String, processor.Int64)
	topology.Input(g, ledger, func(ctx processor.Context[string, int64], _ string, e Entry) error {
		n, _ := ctx.Value()
		return ctx.SetValue(n + e.AmountCents)
	})
	return g
}

// The day's data.
const businessDate = "2026-03-02"

var (
	closingRates = map[string]Rate{
		"AAPL": {ClosePriceCents: 227_48, AnnualRateBP: 530},
		"MSFT": {ClosePriceCents: 415_22, AnnualRateBP: 530},
		"NVDA": {ClosePriceCents: 132_45, AnnualRateBP: 575},
		"SPY":  {ClosePriceCents: 562_34, AnnualRateBP: 480},
		"TSLA": {ClosePriceCents: 258_12, AnnualRateBP: 650},
	}

	deposits = map[string]int64{
		"acc-1001": 50_000_00,
		"acc-1002": 25_000_00,
		"acc-1003": 40_000_00,
		"acc-1004": 10_000_00,
	}

	dayTrades = []Trade{
		{"acc-1001", "AAPL", 100},
		{"acc-1001", "MSFT", 50},
		{"acc-1002", "TSLA", -40}, // a short
		{"acc-1003", "NVDA", 200},
		{"acc-1001", "AAPL", -30}, // partly closed
		{"acc-1001", "NVDA", 20},
		{"acc-1002", "SPY", 10},
		{"acc-1003", "MSFT", 5},
		{"acc-1001", "NVDA", -20}, // closed
		{"acc-1002", "SPY", 15},
		{"acc-1003", "NVDA", -120},
		{"acc-1004", "SPY", 12},
		{"acc-1003", "MSFT", -5},  // closed
		{"acc-1004", "SPY", -12},  // closed
		{"acc-1004", "AAPL", -25}, // a short
		{"acc-1002", "TSLA", 10},  // short reduced
	}
)

// book is what the day should end with, worked out from the day's data
// without the stream processor. It charges with the same overnightFunding
// as the positions group: the check is of the pipeline (every open
// position charged once, at its rate, into its account); the test checks
// the arithmetic against figures worked out by hand.
type book struct {
	open     map[string]Position // by positionKey
	charges  map[string]Entry    // by positionKey
	balances map[string]int64    // by account
}

func expected() book {
	b := book{open: map[string]Position{}, charges: map[string]Entry{}, balances: maps.Clone(deposits)}
	for _, t := range dayTrades {
		k := positionKey(t.Account, t.Instrument)
		p := b.open[k]
		p.Account, p.Instrument = t.Account, t.Instrument
		p.Quantity += t.Quantity
		b.open[k] = p
		if p.Quantity == 0 {
			delete(b.open, k)
		}
	}
	for k, p := range b.open {
		c := overnightFunding(p, closingRates[p.Instrument], businessDate)
		b.charges[k] = c
		b.balances[p.Account] += c.AmountCents
	}
	return b
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "overnightcharges:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	rg := rateTable()
	pg := positionBook(rg)
	bg := balances()
	topo, err := topology.New(rg, pg, bg)
	if err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	rt, err := runtime.New(ctx, topo, runtime.Options{})
	if err != nil {
		return err
	}
	defer rt.Close()

	// The runtime runs until the job is done. If it stops early (a
	// handler failed), the cause cancels the waits below at once rather
	// than at their deadline.
	runCtx, stopRun := context.WithCancelCause(ctx)
	var runErr error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if runErr = rt.Run(runCtx); runErr != nil {
			stopRun(fmt.Errorf("runtime stopped: %w", runErr))
		}
	}()
	defer func() { stopRun(nil); <-stopped }() // before rt.Close
	work, cancelWork := context.WithTimeout(runCtx, time.Minute)
	defer cancelWork()
	want := expected()

	// The rates first, and wait until they are in their table: the
	// positions group reads them through its lookup view, which follows
	// the rates table milliseconds behind, and the trades and the end of
	// day come well after that.
	if err := emitAll(work, rt, rateUpdates, closingRates); err != nil {
		return err
	}
	if err := emitAll(work, rt, ledger, depositEntries()); err != nil {
		return err
	}
	if _, err := awaitTable(work, rt, rg, closingRates); err != nil {
		return err
	}

	// The trades, and wait until the positions table shows them all:
	// trades and end of day are different topics, read independently,
	// so only this wait puts the end of day after the last trade.
	em, err := runtime.NewEmitter(work, rt, trades)
	if err != nil {
		return err
	}
	for _, t := range dayTrades {
		if err := em.Emit(work, positionKey(t.Account, t.Instrument), t); err != nil {
			return err
		}
	}
	if _, err := awaitTable(work, rt, pg, want.open); err != nil {
		return err
	}
	slog.Info("trading day over", "trades", len(dayTrades), "open positions", len(want.open))

	if err := endOfDay(work, rt.Brokers(), businessDate); err != nil {
		return err
	}
	charges, err := readCharges(work, rt.Brokers(), len(want.charges))
	if err != nil {
		return err
	}
	balanceRows, balanceErr := awaitTable(work, rt, bg, want.balances)

	stopRun(nil)
	<-stopped
	if runErr != nil {
		return fmt.Errorf("run: %w", runErr)
	}

	printCharges(out, charges)
	fmt.Fprintln(out)
	printBalances(out, charges, balanceRows)
	if !maps.Equal(charges, want.charges) {
		return fmt.Errorf("charges differ from the independent calculation: got %v, want %v", charges, want.charges)
	}
	if balanceErr != nil {
		return balanceErr
	}
	fmt.Fprintf(out, "\nall %d charges and %d balances match the independent calculation\n", len(charges), len(balanceRows))
	return nil
}

// depositEntries returns the ledger entries of the opening deposits.
func depositEntries() map[string]Entry {
	out := map[string]Entry{}
	for account, cents := range deposits {
		out[account] = Entry{Account: account, Kind: deposit, Date: businessDate, AmountCents: cents}
	}
	return out
}

// emitAll emits every row of rows to topic, keyed by the row's key, and
// waits until they are acknowledged.
func emitAll[V any](ctx context.Context, rt *runtime.Runtime, topic topology.Topic[string, V], rows map[string]V) error {
	em, err := runtime.NewEmitter(ctx, rt, topic)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(rows)) {
		if err := em.Emit(ctx, k, rows[k]); err != nil {
			return err
		}
	}
	return nil
}

// awaitTable waits until the table of g holds exactly want, and returns
// what it holds then, or when ctx ends.
func awaitTable[K, V comparable](ctx context.Context, rt *runtime.Runtime, g *topology.Group[K, V], want map[K]V) (map[K]V, error) {
	ctx, cancel := context.WithCancel(ctx) // stops the view on return
	defer cancel()
	view, err := runtime.NewView(ctx, rt, g)
	if err != nil {
		return nil, err
	}
	for {
		changed := view.Changed()
		got := map[K]V{}
		if err := view.Iterate(func(k K, v V) bool { got[k] = v; return true }); err != nil {
			return nil, err
		}
		if maps.Equal(got, want) {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, fmt.Errorf("table of %s: got %v, want %v: %w", g.Name(), got, want, context.Cause(ctx))
		}
	}
}

// endOfDay sends an end-of-day record to every partition of the eod topic,
// so that every partition of the positions group runs it over its own
// positions. A runtime Emitter picks a record's partition from its key, so
// this uses a plain Kafka client, which can address partitions directly.
func endOfDay(ctx context.Context, brokers []string, date string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return fmt.Errorf("end of day: %w", err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, eod.Name())
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		return fmt.Errorf("end of day: partitions of %s: %w", eod.Name(), err)
	}
	value, err := eod.Values().Encode(EndOfDay{Date: date})
	if err != nil {
		return fmt.Errorf("end of day: %w", err)
	}
	var recs []*kgo.Record
	for p := range topics[eod.Name()].Partitions {
		recs = append(recs, &kgo.Record{Topic: eod.Name(), Partition: p, Key: []byte(date), Value: value})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("end of day: %w", err)
	}
	slog.Info("end of day sent", "date", date, "partitions", len(recs))
	return nil
}

// readCharges reads the ledger from its start, with a plain Kafka client,
// until it has n funding charges, and returns them by positionKey.
func readCharges(ctx context.Context, brokers []string, n int) (map[string]Entry, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(ledger.Name()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, fmt.Errorf("read charges: %w", err)
	}
	defer cl.Close()
	charges := map[string]Entry{}
	for len(charges) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read charges: %d of %d: %w", len(charges), n, context.Cause(ctx))
		}
		fs.EachError(func(topic string, p int32, err error) {
			slog.Warn("read charges", "topic", topic, "partition", p, "err", err)
		})
		for _, rec := range fs.Records() {
			e, err := ledger.Values().Decode(rec.Value)
			if err != nil {
				return nil, fmt.Errorf("read charges: %w", err)
			}
			if e.Kind != funding {
				continue
			}
			k := positionKey(e.Account, e.Instrument)
			if _, dup := charges[k]; dup {
				return nil, fmt.Errorf("read charges: %s charged twice", k)
			}
			charges[k] = e
		}
	}
	return charges, nil
}

func printCharges(out io.Writer, charges map[string]Entry) {
	fmt.Fprintf(out, "overnight funding, end of day %s (ACT/360, one night; longs pay, shorts receive)\n", businessDate)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "account\tinstrument\tquantity\tclose\tvalue\tannual rate\tcharge\t")
	for _, k := range slices.Sorted(maps.Keys(charges)) {
		c := charges[k]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", c.Account, c.Instrument, c.Quantity,
			money(c.ClosePriceCents), money(c.Quantity*c.ClosePriceCents), basisPoints(c.AnnualRateBP), money(c.AmountCents))
	}
	tw.Flush()
}

func printBalances(out io.Writer, charges map[string]Entry, balances map[string]int64) {
	funded := map[string]int64{}
	for _, c := range charges {
		funded[c.Account] += c.AmountCents
	}
	fmt.Fprintln(out, "balances (the balances group's table)")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "account\tdeposit\tfunding\tbalance\t")
	for _, account := range slices.Sorted(maps.Keys(balances)) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", account, money(deposits[account]), money(funded[account]), money(balances[account]))
	}
	tw.Flush()
}

// money formats cents as units with two decimals: -1234.05.
func money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
}

// basisPoints formats a rate in basis points as a percentage: 5.30%.
func basisPoints(bp int64) string { return fmt.Sprintf("%d.%02d%%", bp/100, bp%100) }
