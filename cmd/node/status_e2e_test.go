package main

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestStatusPage loads the admin status page of a real node in a real
// headless browser (Debian's Chromium), lets its script run, and checks the
// page it renders: the node among the members, alive, its rule, and checks
// counted, the keys denied most, the version, the plots of the last five
// minutes drawn in SVG; a screenshot that is not blank, and one the width
// of a phone that the page fits.
func TestStatusPage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("no Chromium (apt-get install chromium)")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")
	write(t, rulesPath, "rules:\n  - {name: api, limit: 2, period: 1h}\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := startProcess(t, ctx, bin, "--node-name", "status-e2e", "--rules", rulesPath,
		"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
		"--peer-addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	started, _ := p.logs.await(t, "sluice started", 0)
	admin := "http://" + started["admin_addr"].(string)
	admin = strings.Replace(admin, "[::]", "127.0.0.1", 1)
	for range 48 { // 3 of them sampled for the hottest keys
		post(t, p.api+"/v1/check", `{"rule": "api", "key": "alice"}`)
	}

	// The plots read the per-second counts, which take each second once it
	// has passed: wait until the node has counted all 48.
	awaitAPI(t, p, 30*time.Second, "counting the checks in its rates", func() bool {
		_, st := request(t, http.MethodGet, admin+"/v1/status", "")
		rates, _ := st["rates"].(map[string]any)
		sum := 0.0
		for _, v := range list(rates["checks"]) {
			sum += v.(float64)
		}
		return sum == 48
	})

	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, browser, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
			"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + filepath.Join(dir, "chrome"), "--virtual-time-budget=5000"}, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", browser, err, errOut.String())
		}
		return out.Bytes()
	}
	dom := string(run("--dump-dom", admin+"/"))
	rows := regexp.MustCompile(`(?s)<table id="members">.*?</table>`).FindString(dom)
	for _, want := range []string{"status-e2e (this node)", `class="alive"`} {
		if !strings.Contains(rows, want) {
			t.Fatalf("the members table lacks %q: the page shows no live member\n%s", want, rows)
		}
	}
	hot := regexp.MustCompile(`(?s)<table id="hot">.*?</table>`).FindString(dom)
	if !strings.Contains(hot, ">alice<") {
		t.Fatalf("the hottest keys lack alice:\n%s", hot)
	}
	denied := regexp.MustCompile(`(?s)<table id="denied">.*?</table>`).FindString(dom)
	if !regexp.MustCompile(`<td>api</td><td>alice</td><td>46</td>`).MatchString(denied) {
		t.Fatalf("the top denied keys lack alice, denied 46 times:\n%s", denied)
	}
	// The plots: a line and an area in each, and the five minutes' sums.
	for id, sum := range map[string]string{"checks": "48 in 5 min", "denied": "46 in 5 min", "fallbacks": "0 in 5 min"} {
		fig := regexp.MustCompile(`(?s)<figure class="plot" id="plot-` + id + `">.*?</figure>`).FindString(dom)
		if !regexp.MustCompile(`<svg [^>]*viewBox="0 0 300 60".*<path class="area" d="M0,60 L0,[0-9.]+ L1,.*<path class="line" d="M0,[0-9.]+ L1,`).MatchString(fig) {
			t.Fatalf("the %s plot has no line drawn in its SVG:\n%s", id, fig)
		}
		if !strings.Contains(fig, sum) {
			t.Fatalf("the %s plot lacks %q:\n%s", id, sum, fig)
		}
	}
	for _, want := range []string{"48 checks since start", ">api<", "1 of 1 alive", `<span id="version">dev</span>`, `name="viewport"`} {
		if !strings.Contains(dom, want) {
			t.Fatalf("the page lacks %q:\n%s", want, dom)
		}
	}

	shot := filepath.Join(dir, "status.png")
	run("--screenshot="+shot, "--window-size=1000,800", admin+"/")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	colors := map[string]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[fmt.Sprint(r>>12, g>>12, bl>>12)] = true
		}
	}
	if len(colors) < 3 {
		t.Fatalf("the screenshot is blank (%d colours)", len(colors))
	}
	// On a phone's screen, the page fits its width: nothing is drawn past
	// it, so the right-hand strip is the page's background.
	phone := filepath.Join(dir, "phone.png")
	run("--screenshot="+phone, "--window-size=390,844", admin+"/")
	checkFitsWidth(t, phone)
	if out := os.Getenv("SLUICE_SCREENSHOT"); out != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(out, data, 0o644)
		data, _ = os.ReadFile(phone)
		os.WriteFile(strings.TrimSuffix(out, ".png")+"-phone.png", data, 0o644)
	}
}

// checkFitsWidth fails unless the right-hand strip of the screenshot in
// file (narrower than the page's margin) is all background: a page wider
// than the window is cut off at its edge, where it leaves ink.
func checkFitsWidth(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Max.X - 6; x < b.Max.X; x++ {
			if r, g, bl, _ := img.At(x, y).RGBA(); r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				t.Fatalf("%s: ink at (%d, %d), in the right margin of a %d px wide window: the page is wider than a phone's screen", file, x, y, b.Dx())
			}
		}
	}
}
