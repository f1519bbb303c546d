package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShutdownUnderSteadyLoadDrainsInFlight: an application that keeps
// asking (here /v1/wait calls of about 200 ms, back to back, as a busy
// sidecar sees) never lets the API be quiet for drainQuiet, so awaitQuiet
// spends the whole --shutdown-timeout; srv.Shutdown is then called with an
// expired context: the wait in flight is cut off (the application gets a
// broken connection, not an answer) and run returns "drain: context
// deadline exceeded", so every SIGTERM under load exits with status 1.
// Before this change the drain had the rest of the budget for requests in
// flight.
func TestShutdownUnderSteadyLoadDrainsInFlight(t *testing.T) {
	logs, cancel, done := runInProcess(t, "--shutdown-timeout", "2s")
	started, _ := logs.await(t, "sluice started", 0)
	api := "http://" + started["http_addr"].(string)
	wait := `{"key": "w", "limit": 5, "period": "1s", "burst": 1, "max_wait": "5s"}`
	cut := make(chan error, 1)
	stopAsking := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopAsking:
				cut <- nil
				return
			default:
			}
			resp, err := http.Post(api+"/v1/wait", "application/json", strings.NewReader(wait))
			if err != nil {
				if errors.Is(err, syscall.ECONNREFUSED) {
					cut <- nil // the API closed between calls: fine
				} else {
					cut <- fmt.Errorf("a /v1/wait in flight was cut off: %w", err)
				}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	cancel() // SIGTERM under steady load
	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within --shutdown-timeout (2s) + 3s")
	}
	took := time.Since(start)
	close(stopAsking)
	cutErr := <-cut
	if runErr != nil || cutErr != nil {
		t.Fatalf("SIGTERM under steady load (returned after %v): run: %v; application: %v", took.Round(time.Millisecond), runErr, cutErr)
	}
}
