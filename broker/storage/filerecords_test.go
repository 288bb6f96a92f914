package storage

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// Records.WriteTo to a TCP socket goes through sendfile; what arrives must
// be byte for byte what AppendTo copies out, including when the socket
// buffer fills and sendfile has to wait for the reader.
func TestRecordsWriteToSocket(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways})
	mustCreate(t, l, "t", 1, nil)
	p, _ := l.Partition("t", 0)
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB values
	for i := range 64 {
		mustAppend(t, p, mustBatch(t, int64(i), kv("k", string(big)+string(rune('a'+i%26)))))
	}
	r, err := p.Read(0, 8<<20, -1)
	if err != nil {
		t.Fatal(err)
	}
	want, err := r.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 4<<20 {
		t.Fatalf("read %d bytes, want all 64 batches (> 4 MiB)", len(want))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.WriteTo(c)
	c.Close()
	if err != nil || n != int64(len(want)) {
		t.Fatalf("WriteTo wrote %d bytes, %v; want %d", n, err, len(want))
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("socket received %d bytes that differ from the %d read", len(b), len(want))
	}
	// A plain writer takes the copying path.
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("WriteTo a buffer: %v, equal %v", err, bytes.Equal(buf.Bytes(), want))
	}
}
