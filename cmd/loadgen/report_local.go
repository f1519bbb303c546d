package main

import (
	"fmt"
	"runtime"
	"strings"
)

// The local path: how the application reaches its sidecar. The same
// check over TCP on loopback and over a Unix domain socket, in JSON and
// in msgpack, and batches of 100, each read against the trivial handler
// on the same carrier.

// localPathPrefix starts the names of these scenarios: --only "local path"
// runs them (with the baselines, which always run).
const localPathPrefix = "local path: "

// trivialUnix is the trivial handler served on a Unix socket.
const trivialUnix = localPathPrefix + "trivial handler, Unix socket"

func localPathScenarios(closed func(targets []string, conc int) Config) []scenario {
	scs := []scenario{{name: trivialUnix, nodes: 0, unix: true,
		cfg:  func(t []string, _ map[string]Result) Config { return closed(t, 32) },
		note: "the ceiling over a Unix socket: the trivial JSON handler, served on a socket file"}}
	for _, op := range []string{"check", "batch"} {
		for _, format := range []string{"json", "msgpack"} {
			for _, unix := range []bool{false, true} {
				if op == "batch" && format == "json" && unix {
					continue
				}
				name, note := localPathName(op, format, unix), "10,000 keys, uniform, limits never reached; "+format+" bodies"
				conc := 32
				if op == "batch" {
					// 32 senders, as for single checks: with the 8 of the
					// batch line above, the node waits on the senders.
					note += "; 32 senders; decisions per second"
				}
				scs = append(scs, scenario{name: name, nodes: 1, unix: unix, note: note,
					cfg: func(t []string, _ map[string]Result) Config {
						c := closed(t, conc)
						c.Op, c.Format = op, format
						if op == "batch" {
							c.Batch = 100
						}
						return c
					}})
			}
		}
	}
	return scs
}

func localPathName(op, format string, unix bool) string {
	path, carrier := "/v1/check", "TCP"
	if op == "batch" {
		path = "/v1/check/batch of 100"
	}
	if unix {
		carrier = "Unix socket"
	}
	if format == "json" {
		format = "JSON"
	}
	return fmt.Sprintf("%s%s, %s, %s", localPathPrefix, path, format, carrier)
}

// renderLocalPath writes each local-path scenario's throughput as a ratio
// to the trivial handler on the same carrier.
func renderLocalPath(b *strings.Builder, med map[string]Result) {
	trivial := map[bool]Result{false: med["trivial net/http JSON handler"], true: med[trivialUnix]}
	for _, op := range []string{"check", "batch"} {
		for _, format := range []string{"json", "msgpack"} {
			for _, unix := range []bool{false, true} {
				r, ok := med[localPathName(op, format, unix)]
				t := trivial[unix]
				if !ok || t.RequestsPS == 0 {
					continue
				}
				name := strings.TrimPrefix(localPathName(op, format, unix), localPathPrefix)
				if op == "batch" {
					fmt.Fprintf(b, "- %s: **%.0f decisions/s** (target ≥ 500,000; %.1f× the trivial handler's requests/s on the same carrier), with the node at %.0f%% of the machine and the generator at %.0f%%: %.0f decisions per CPU second of the node, %.0f per CPU second of node and generator together (%.0f a second if the two had the %d cores to themselves).\n",
						name, r.DecisionsPS, r.DecisionsPS/t.RequestsPS, 100*r.ServerCPU, 100*r.GeneratorCPU,
						perCPU(r, false), perCPU(r, true), perCPU(r, true)*float64(runtime.NumCPU()), runtime.NumCPU())
					continue
				}
				fmt.Fprintf(b, "- %s: **%.0f%%** of the trivial handler's throughput on the same carrier (%.0f vs %.0f requests/s); per CPU second of the server, **%.0f%%** of the trivial handler's requests (%.0f vs %.0f); the node took %.0f%% of the machine, the generator %.0f%%.\n",
					name, 100*r.RequestsPS/t.RequestsPS, r.RequestsPS, t.RequestsPS, 100*perCPU(r, false)/perCPU(t, false), perCPU(r, false), perCPU(t, false), 100*r.ServerCPU, 100*r.GeneratorCPU)
			}
		}
	}
}

// perCPU is the decisions per CPU second the server used, or, with
// generator, the server and the load generator together.
func perCPU(r Result, generator bool) float64 {
	cpu := r.ServerCPU
	if generator {
		cpu += r.GeneratorCPU
	}
	if cpu == 0 {
		return 0
	}
	return r.DecisionsPS / (cpu * float64(runtime.NumCPU()))
}
