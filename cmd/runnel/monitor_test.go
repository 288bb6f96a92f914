package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/internal/browsertest"
)

// topicCell is a cell of the monitor page's topics table.
type topicCell struct {
	Text  string `json:"text"`
	Class string `json:"class"`
}

// The monitor page of runnel serve --metrics, in a real (headless)
// browser, while a franz-go transaction is open on orders:0: the page's
// open transactions list it, and the topics table shows orders:0's last
// stable offset before the transaction's records, below the high
// watermark, and marked. After the commit the list says there are none and
// the last stable offset is the high watermark again.
func TestMonitorPageTransactions(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	stderr := newSyncBuffer()
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
			"--data", t.TempDir(), "--auto-create=false"}, io.Discard, stderr)
	}()
	defer func() {
		cancel()
		if code := <-exited; code != 0 {
			t.Errorf("runnel serve exited %d:\n%s", code, stderr.String())
		}
	}()
	addr := awaitLogged(t, stderr, "runnel serve listening")
	page := "http://" + awaitLogged(t, stderr, "runnel serve monitor listening") + "/"

	// orders:0 holds 3 committed records, then 2 of the open transaction:
	// high watermark 5, last stable offset 3.
	createTopic(t, addr, "orders", 1, nil)
	for range 3 {
		produceTo(t, addr, &kgo.Record{Topic: "orders", Value: []byte("plain")})
	}
	producer := newClient(t, addr, kgo.TransactionalID("orders-writer"), kgo.TransactionTimeout(30*time.Second),
		kgo.DefaultProduceTopic("orders"))
	if err := producer.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := producer.ProduceSync(ctx, &kgo.Record{Value: []byte("p1")}, &kgo.Record{Value: []byte("p2")}).FirstErr(); err != nil {
		t.Fatalf("transactional produce: %v", err)
	}
	pid, epoch, err := producer.ProducerID(ctx)
	if err != nil {
		t.Fatalf("producer id: %v", err)
	}

	browser, finish := browsertest.Start(ctx, t)
	defer finish()
	// Each wait gives up after half the test's time, leaving the rest for
	// the screenshot and the shutdown.
	poll := chromedp.WithPollingTimeout(cliTimeout / 2)
	if err := chromedp.Do(browser, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}

	// orders0 is a script that yields orders:0's row of the topics table
	// when the condition on it, txns (the open transactions' section) and
	// cells (the row's cells) holds.
	orders0 := func(cond string) string {
		return `(() => {
			const txns = document.getElementById("transactions");
			const tr = [...document.querySelectorAll("#topics tbody tr")].find((tr) =>
				tr.cells[0].textContent === "orders" && tr.cells[1].textContent === "0");
			if (!tr) return false;
			const cells = [...tr.cells].map((td) => ({text: td.textContent, class: td.className}));
			return (` + cond + `) && cells;
		})()`
	}
	// The columns: topic, partition, log start, high watermark, last stable,
	// log end, size.
	const hw, lso = 3, 4
	row, err := chromedp.Run(browser, chromedp.Poll[[]topicCell](orders0(`cells[3].text === "5"`), poll))
	if err != nil {
		t.Fatalf("orders:0 never showed the transaction's records: %v", err)
	}
	if row[lso].Text != "3" || row[lso].Class != "num lagging" || row[hw].Text != "5" {
		t.Errorf("orders:0 shows high watermark %q and last stable offset %+v, want 5 and 3 marked lagging", row[hw].Text, row[lso])
	}
	txns, err := chromedp.Run(browser, chromedp.Poll[[][]string](`(() => {
		const rows = [...document.querySelectorAll("#transactions tbody tr")];
		return rows.length > 0 && rows.map((tr) => [...tr.cells].map((td) => td.textContent));
	})()`, poll))
	if err != nil {
		t.Fatalf("the open transaction never showed: %v", err)
	}
	if len(txns) != 1 || len(txns[0]) != 7 {
		t.Fatalf("open transactions %q, want one row of 7 cells", txns)
	}
	// The open-for cell counts from the transaction's start by the clock;
	// only its form is stable.
	want := []string{"orders-writer", fmt.Sprint(pid), fmt.Sprint(epoch), "Ongoing", txns[0][4], "30 s", "orders [0]"}
	var openFor float64
	if _, err := fmt.Sscanf(txns[0][4], "%f s", &openFor); err != nil || openFor < 0 || !slices.Equal(txns[0], want) {
		t.Errorf("open transaction %q, want %q with its open-for in seconds", txns[0], want)
	}

	if err := producer.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	// The commit marker takes offset 5.
	row, err = chromedp.Run(browser, chromedp.Poll[[]topicCell](
		orders0(`txns.textContent === "No open transactions." && cells[3].text === "6"`), poll))
	if err != nil {
		t.Fatalf("the page never showed the transaction committed: %v", err)
	}
	if row[lso].Text != "6" || row[lso].Class != "num" {
		t.Errorf("after the commit orders:0 shows last stable offset %+v, want 6, unmarked", row[lso])
	}
}
