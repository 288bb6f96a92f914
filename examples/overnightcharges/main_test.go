package main

import (
	"bytes"
	"maps"
	"strings"
	"testing"
)

// table returns the rows of the table under the line starting with title,
// each row's fields keyed by its first keyFields fields joined by a space.
func table(t *testing.T, out, title string, keyFields int) map[string][]string {
	t.Helper()
	i := strings.Index(out, title)
	if i < 0 {
		t.Fatalf("no table %q in the output:\n%s", title, out)
	}
	rows := map[string][]string{}
	// Line 0 is the title, line 1 the column header; the table ends at
	// the first empty line.
	for _, line := range strings.Split(out[i:], "\n")[2:] {
		if line == "" {
			break
		}
		f := strings.Fields(line)
		rows[strings.Join(f[:keyFields], " ")] = f[keyFields:]
	}
	return rows
}

// The program charges exactly the positions left open, at the figures
// worked out by hand below, and the balances group ends with each deposit
// plus its account's charges.
func TestOvernightCharges(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("overnightcharges: %v\n%s", err, out.String())
	}
	got := out.String()

	// charge = value × annual rate / 360, debited to longs and credited
	// to shorts, to the nearest cent.
	wantCharges := map[string]string{
		"acc-1001 AAPL": "-2.34", //  70 × 227.48 = 15923.60; × 5.30% / 360 = 2.3443
		"acc-1001 MSFT": "-3.06", //  50 × 415.22 = 20761.00; × 5.30% / 360 = 3.0565
		"acc-1002 SPY":  "-1.87", //  25 × 562.34 = 14058.50; × 4.80% / 360 = 1.8745
		"acc-1002 TSLA": "1.40",  // -30 × 258.12 = -7743.60; × 6.50% / 360 = 1.3982
		"acc-1003 NVDA": "-1.69", //  80 × 132.45 = 10596.00; × 5.75% / 360 = 1.6924
		"acc-1004 AAPL": "0.84",  // -25 × 227.48 = -5687.00; × 5.30% / 360 = 0.8373
	}
	charges := map[string]string{}
	for k, f := range table(t, got, "overnight funding", 2) {
		charges[k] = f[len(f)-1]
	}
	if !maps.Equal(charges, wantCharges) {
		t.Errorf("charges: printed %v, want %v", charges, wantCharges)
	}

	wantBalances := map[string]string{
		"acc-1001": "49994.60", // 50000.00 - 2.34 - 3.06
		"acc-1002": "24999.53", // 25000.00 - 1.87 + 1.40
		"acc-1003": "39998.31", // 40000.00 - 1.69
		"acc-1004": "10000.84", // 10000.00 + 0.84
	}
	balances := map[string]string{}
	for k, f := range table(t, got, "balances (the balances group", 1) {
		balances[k] = f[len(f)-1]
	}
	if !maps.Equal(balances, wantBalances) {
		t.Errorf("balances: printed %v, want %v", balances, wantBalances)
	}
	if line := "all 6 charges and 4 balances match the independent calculation"; !strings.Contains(got, line) {
		t.Errorf("output lacks %q", line)
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}

// Funding rounds to the nearest cent, halves away from zero, the same for
// longs and shorts.
func TestFundingCents(t *testing.T) {
	for _, c := range []struct {
		quantity, closeCents, rateBP, want int64
	}{
		{1, 360_00, 100, -1},         // 360.00 × 1% / 360 = 0.01 exactly
		{1, 360_00, 50, -1},          // 0.005: half a cent, rounded away from zero
		{-1, 360_00, 50, 1},          // a short receives the same, rounded the same
		{1, 360_00, 49, 0},           // 0.0049
		{100, 1_000_00, 500, -13_89}, // 100000.00 × 5% / 360 = 13.888…
		{0, 1_000_00, 500, 0},
	} {
		if got := fundingCents(c.quantity, c.closeCents, c.rateBP); got != c.want {
			t.Errorf("fundingCents(%d, %d, %d) = %d, want %d", c.quantity, c.closeCents, c.rateBP, got, c.want)
		}
	}
}

func TestMoney(t *testing.T) {
	for cents, want := range map[int64]string{0: "0.00", 5: "0.05", -5: "-0.05", 123456: "1234.56", -100: "-1.00"} {
		if got := money(cents); got != want {
			t.Errorf("money(%d) = %q, want %q", cents, got, want)
		}
	}
}
