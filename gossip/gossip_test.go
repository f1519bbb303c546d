package gossip

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestJoinTargets(t *testing.T) {
	seeds := []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"}
	live := map[string]bool{"10.0.0.1:7946": true, "10.0.0.2:7946": true}
	failed := []string{"10.0.0.9:7946", "10.0.0.3:7946"}
	got := joinTargets(seeds, live, failed, "10.0.0.1:7946")
	want := []string{"10.0.0.3:7946", "10.0.0.9:7946"}
	if !slices.Equal(got, want) {
		t.Fatalf("joinTargets = %v, want %v (unknown seeds and failed members, no live ones, no self, no repeats)", got, want)
	}
	if got := joinTargets([]string{"10.0.0.1:7946"}, nil, nil, "10.0.0.1:7946"); len(got) != 0 {
		t.Fatalf("a node must not join itself: %v", got)
	}
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if ips, ok := f[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestResolveSeeds(t *testing.T) {
	r := fakeResolver{
		"sluice.default.svc": {"10.0.0.2", "10.0.0.1", "fd00::1"},
		"other":              {"10.0.0.1"},
	}
	got, err := resolveSeeds(context.Background(), r,
		[]string{"sluice.default.svc", "other:8000", "10.0.0.7", "[fd00::2]:7000", "[fd00::3]", "missing", "bad:port:x"}, 7946)
	want := []string{"10.0.0.1:7946", "10.0.0.1:8000", "10.0.0.2:7946", "10.0.0.7:7946", "[fd00::1]:7946", "[fd00::2]:7000", "[fd00::3]:7946"}
	if !slices.Equal(got, want) {
		t.Fatalf("resolveSeeds = %v, want %v", got, want)
	}
	if err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("a seed that does not resolve must be reported, got %v", err)
	}
}

func TestValidateSeed(t *testing.T) {
	for _, ok := range []string{"sluice", "sluice.ns.svc:7946", "10.0.0.1", "[::1]:7946", "::1", "[::1]"} {
		if err := ValidateSeed(ok); err != nil {
			t.Errorf("ValidateSeed(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "host:0", "host:99999", "host:x", ":7946", "[]", "[]:7946"} {
		if ValidateSeed(bad) == nil {
			t.Errorf("ValidateSeed(%q) accepted", bad)
		}
	}
}

func TestNewRefusesSeedsWithoutKey(t *testing.T) {
	_, err := New(Config{Name: "n", Seeds: []string{"sluice"}, BindAddr: "127.0.0.1:0"})
	if !errors.Is(err, ErrInsecure) {
		t.Fatalf("New with seeds and no key = %v, want ErrInsecure", err)
	}
}

func TestLogWriterLevelsAndRejections(t *testing.T) {
	var buf bytes.Buffer
	var rejected []string
	w := &logWriter{
		log:    slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		reject: func(r string) { rejected = append(rejected, r) },
	}
	for _, line := range []string{
		"[DEBUG] memberlist: Stream connection from=127.0.0.1:1234",
		"[WARN] memberlist: Refuting a suspect message (from: node-2)",
		"[ERR] memberlist: Failed fallback ping: EOF",
		"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.9:7946",
		`[ERR] memberlist: discarding packet with unacceptable label "staging": from=10.0.0.9:7946`,
		"[ERR] memberlist: msg type (77) not supported from=10.0.0.9:7946",
		"[ERR] memberlist: Failed to send gossip to 10.0.0.2:7946: write udp 10.0.0.1:7946->10.0.0.2:7946: use of closed network connection",
	} {
		w.Write([]byte(line + "\n"))
	}
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="Stream connection`,
		`level=WARN msg="Refuting a suspect message`,
		`level=ERROR msg="Failed fallback ping: EOF"`,
		`level=WARN msg="Decrypt packet failed`,  // a stranger's packet is not our error
		`level=DEBUG msg="Failed to send gossip`, // memberlist shutting down
		"component=memberlist",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if !slices.Equal(rejected, []string{"key", "label", "malformed"}) {
		t.Fatalf("rejections %v, want key, label, malformed", rejected)
	}
}

func TestMetaRoundTripAndLimit(t *testing.T) {
	m := Meta{PeerAddr: "10.0.0.1:7947", API: APIVersion, Incarnation: 1234567890, GossipMax: 8, GossipModeMax: 32, Beats: true}
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeMeta(b); err != nil || got != m {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := (Meta{PeerAddr: strings.Repeat("x", 600)}).encode(); err == nil {
		t.Fatal("metadata over 512 bytes must be refused (memberlist panics on it)")
	}
}

func TestLeavingRoundTrip(t *testing.T) {
	l, ok := decodeMessage(encodeLeaving("node-3"))
	if !ok || l.Name != "node-3" {
		t.Fatalf("round trip: %+v %v", l, ok)
	}
}

// FuzzDecodeMessage feeds arbitrary frames to the peer message decoder: no
// panic, and anything accepted is a bounded, non-empty name.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(encodeLeaving("node-1"))
	f.Add([]byte{msgLeaving})
	f.Add([]byte{msgLeaving, 0xdf, 0xff, 0xff, 0xff, 0xff}) // a map claiming 4G entries
	f.Add([]byte{99, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, ok := decodeMessage(b)
		if ok && (l.Name == "" || len(l.Name) > maxNameBytes) {
			t.Fatalf("accepted %+v", l)
		}
	})
}

// FuzzDecodeMeta feeds arbitrary node metadata to its decoder.
func FuzzDecodeMeta(f *testing.F) {
	b, _ := Meta{PeerAddr: "10.0.0.1:7947", API: 1, Incarnation: 42}.encode()
	f.Add(b)
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err == nil && len(b) > maxMetaBytes {
			t.Fatalf("accepted %d bytes of metadata: %+v", len(b), m)
		}
	})
}
