package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// The command-line client, `sluice ctl`: a subcommand of the node's own
// binary, so that wherever a node runs (a container image holds one
// binary) its client is there too, at the same version. It talks to a
// node's admin port (keys, members, top denied keys) and API port (rules).

const ctlUsage = `Usage: sluice ctl [flags] COMMAND [ARGS]

Asks a running sluice node. Commands:

  inspect [SELECTOR] KEY       a key's bucket: level, remaining, reset, owner, leases out
  reset [SELECTOR] KEY         reset a key on every live member (a fresh burst)
  members                      the members as the node sees them
  rules                        the rules in force, with origin and version
  rules put NAME --limit N --period D [--burst B] [--algorithm A] [--sync S] [--shadow] [--descriptor KEY[=VALUE]]...
  rules delete NAME            delete a rule set through the API
  top-denied [--n N]           the keys this node denied most lately

SELECTOR is RULE as a first argument (inspect api-per-user alice), or
--rule RULE, or --descriptor NAME:VALUE (repeated; no KEY then), or an inline
limit: --limit N --period D [--burst B] [--algorithm A]; --sync overrides the
mode, as in a check.

Flags (before COMMAND; --json may also follow it):
`

// ctlOptions are the client's settings.
type ctlOptions struct {
	admin, api, token string
	json              bool
	timeout           time.Duration
}

// runCtl runs one client command.
func runCtl(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o ctlOptions
	fs := flag.NewFlagSet("sluice ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.admin, "admin", envOr(getenv, "SLUICE_ADMIN_ADDR", "127.0.0.1:8081"), "`host:port` of the node's admin port (env SLUICE_ADMIN_ADDR)")
	fs.StringVar(&o.api, "api", envOr(getenv, "SLUICE_HTTP_ADDR", "127.0.0.1:8080"), "`host:port` of the node's API, for rules (env SLUICE_HTTP_ADDR)")
	fs.StringVar(&o.token, "admin-token", getenv("SLUICE_ADMIN_TOKEN"), "`token` the node requires on its admin port's key endpoints when it has one (env SLUICE_ADMIN_TOKEN)")
	fs.BoolVar(&o.json, "json", false, "print the node's JSON answer, for scripts")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "give up on the node after this long")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ctlUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("ctl: a command is required")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c := &ctlClient{o: o, out: stdout, http: &http.Client{}}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "inspect", "reset":
		return c.key(ctx, cmd, rest, stderr)
	case "members":
		return c.members(ctx, rest, stderr)
	case "rules":
		return c.rules(ctx, rest, stderr)
	case "top-denied":
		return c.topDenied(ctx, rest, stderr)
	}
	return fmt.Errorf("ctl: unknown command %q (inspect, reset, members, rules, top-denied)", cmd)
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// ctlClient makes the client's calls.
type ctlClient struct {
	o    ctlOptions
	out  io.Writer
	http *http.Client
}

// call sends a request to the node at hostPort and decodes a 2xx JSON
// answer into v (and prints it as is with --json). Any other answer is an
// error carrying the node's message; a JSON body is decoded into v too (a
// partial reset lists who did reset the key).
func (c *ctlClient) call(ctx context.Context, method, hostPort, path string, body any, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	base, hc := hostPort, c.http
	if sock, ok := strings.CutPrefix(hostPort, "unix:"); ok {
		// A node listening on a Unix socket (--http-addr/--admin-addr
		// unix:/path): dial the socket, whatever the URL's host.
		base = "http://sluice"
		hc = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	} else if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return err
	}
	if c.o.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.o.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("ask %s: %w", hostPort, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read %s's answer: %w", hostPort, err)
	}
	if c.o.json {
		c.out.Write(raw)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			if v != nil {
				json.Unmarshal(raw, v) // a partial answer, for the caller to show
			}
			return &ctlError{status: resp.StatusCode, msg: e.Error}
		}
		return &ctlError{status: resp.StatusCode, msg: strings.TrimSpace(string(raw))}
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s %s answered %d with no JSON: %w", method, path, resp.StatusCode, err)
	}
	return nil
}

// ctlError is a node's non-2xx answer.
type ctlError struct {
	status int
	msg    string
}

func (e *ctlError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.msg)
}

// selector is the key selector of inspect and reset, as flags.
type selector struct {
	rule, period, algorithm, sync string
	limit, burst                  int64
	descriptors                   listFlag
}

func (s *selector) flags(fs *flag.FlagSet) {
	fs.StringVar(&s.rule, "rule", "", "the key's named `rule`")
	fs.Var(&s.descriptors, "descriptor", "a descriptor `name:value` (repeatable), instead of a rule and key")
	fs.Int64Var(&s.limit, "limit", 0, "an inline limit: tokens per period")
	fs.StringVar(&s.period, "period", "", "an inline limit's period")
	fs.Int64Var(&s.burst, "burst", 0, "an inline limit's burst")
	fs.StringVar(&s.algorithm, "algorithm", "", "an inline limit's algorithm")
	fs.StringVar(&s.sync, "sync", "", "the sync mode, if not the rule's")
}

// key runs inspect or reset.
func (c *ctlClient) key(ctx context.Context, cmd string, args []string, stderr io.Writer) error {
	var s selector
	fs := c.flagSet(cmd, stderr)
	s.flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	pos := fs.Args()
	if err := checkUTF8(cmd, append(append(pos, s.rule, s.period, s.algorithm, s.sync), s.descriptors...)...); err != nil {
		return err
	}
	if len(pos) == 2 && s.rule == "" && s.limit == 0 && len(s.descriptors) == 0 {
		s.rule, pos = pos[0], pos[1:]
	}
	q := url.Values{}
	switch {
	case len(s.descriptors) > 0 && len(pos) == 0:
		q["descriptor"] = s.descriptors
	case len(pos) == 1:
		q.Set("key", pos[0])
	default:
		return fmt.Errorf("ctl %s: give RULE KEY, or KEY with --rule or an inline --limit and --period, or --descriptor NAME:VALUE", cmd)
	}
	for name, v := range map[string]string{"rule": s.rule, "period": s.period, "algorithm": s.algorithm, "sync": s.sync} {
		if v != "" {
			q.Set(name, v)
		}
	}
	if s.limit != 0 {
		q.Set("limit", strconv.FormatInt(s.limit, 10))
	}
	if s.burst != 0 {
		q.Set("burst", strconv.FormatInt(s.burst, 10))
	}
	if cmd == "inspect" {
		var v inspectAnswer
		if err := c.call(ctx, http.MethodGet, c.o.admin, "/v1/keys/inspect?"+q.Encode(), nil, &v); err != nil {
			return err
		}
		if !c.o.json {
			printInspect(c.out, &v)
		}
		return nil
	}
	body := map[string]any{}
	for name, vals := range q {
		switch name {
		case "limit", "burst":
			n, _ := strconv.ParseInt(vals[0], 10, 64)
			body[name] = n
		case "descriptor":
			d := map[string]string{}
			for _, kv := range vals {
				k, v, _ := strings.Cut(kv, ":")
				d[k] = v
			}
			body["descriptors"] = d
		default:
			body[name] = vals[0]
		}
	}
	var v resetAnswer
	err := c.call(ctx, http.MethodPost, c.o.admin, "/v1/keys/reset", body, &v)
	if !c.o.json && v.Key != "" {
		printReset(c.out, &v)
	}
	return err
}

// flagSet returns the flags of a command, with --json (also taken after
// the command).
func (c *ctlClient) flagSet(cmd string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice ctl "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.o.json, "json", c.o.json, "print the node's JSON answer, for scripts")
	return fs
}

// noArgs parses the flags of a command that takes no arguments.
func (c *ctlClient) noArgs(cmd string, args []string, stderr io.Writer) error {
	fs := c.flagSet(cmd, stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("ctl %s: unexpected argument %q", cmd, fs.Arg(0))
	}
	return nil
}

// members lists the members as the node sees them.
func (c *ctlClient) members(ctx context.Context, args []string, stderr io.Writer) error {
	if err := c.noArgs("members", args, stderr); err != nil {
		return err
	}
	var v statusAnswer
	if err := c.call(ctx, http.MethodGet, c.o.admin, "/v1/status", nil, &v); err != nil {
		return err
	}
	if !c.o.json {
		printMembers(c.out, &v)
	}
	return nil
}

// topDenied lists the keys the node denied most lately.
func (c *ctlClient) topDenied(ctx context.Context, args []string, stderr io.Writer) error {
	fs := c.flagSet("top-denied", stderr)
	n := fs.Int("n", 20, "how many keys")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("ctl top-denied: unexpected argument %q", fs.Arg(0))
	}
	var v topDeniedAnswer
	if err := c.call(ctx, http.MethodGet, c.o.admin, "/debug/top-denied?n="+strconv.Itoa(*n), nil, &v); err != nil {
		return err
	}
	if !c.o.json {
		printTopDenied(c.out, &v)
	}
	return nil
}

// rules lists, puts or deletes rules, on the API port.
func (c *ctlClient) rules(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "list" || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && args[0] == "list" {
			args = args[1:]
		}
		if err := c.noArgs("rules", args, stderr); err != nil {
			return err
		}
		var v rulesAnswer
		if err := c.call(ctx, http.MethodGet, c.o.api, "/v1/rules", nil, &v); err != nil {
			return err
		}
		if !c.o.json {
			printRules(c.out, &v)
		}
		return nil
	}
	switch args[0] {
	case "delete":
		if len(args) < 2 || strings.HasPrefix(args[1], "-") {
			return errors.New("ctl rules delete: give the rule's NAME")
		}
		if err := c.noArgs("rules delete", args[2:], stderr); err != nil {
			return err
		}
		var v struct {
			Deleted rules.Entry `json:"deleted"`
		}
		if err := c.call(ctx, http.MethodDelete, c.o.api, "/v1/rules/"+url.PathEscape(args[1]), nil, &v); err != nil {
			return err
		}
		if !c.o.json {
			fmt.Fprintf(c.out, "deleted %s (version %d @ %s); the deletion reaches every node by gossip\n", v.Deleted.Name, v.Deleted.Version.Clock, v.Deleted.Version.Node)
		}
		return nil
	case "put":
		var spec rules.Spec
		var descs listFlag
		fs := c.flagSet("rules put", stderr)
		fs.Int64Var(&spec.Limit, "limit", 0, "tokens per period")
		fs.StringVar(&spec.Period, "period", "", "the period, a Go duration (1s, 1m)")
		fs.Int64Var(&spec.Burst, "burst", 0, "bucket size (default: limit)")
		fs.StringVar(&spec.Algorithm, "algorithm", "", "token_bucket (default), leaky_bucket, fixed_window, sliding_window_log, sliding_window")
		fs.StringVar(&spec.Sync, "sync", "", "auto (default), local, gossip or owner")
		fs.BoolVar(&spec.Shadow, "shadow", false, "decide and count, but allow everything")
		fs.Var(&descs, "descriptor", "a descriptor `key` or key=value the rule matches (repeatable)")
		if len(args) < 2 || strings.HasPrefix(args[1], "-") {
			return errors.New("ctl rules put: give the rule's NAME, then its flags")
		}
		name := args[1]
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("ctl rules put: unexpected argument %q", fs.Arg(0))
		}
		if err := putSpec(name, &spec, descs); err != nil {
			return err
		}
		var v struct {
			Rules []rules.Entry `json:"rules"`
		}
		if err := c.call(ctx, http.MethodPut, c.o.api, "/v1/rules/"+url.PathEscape(name), spec, &v); err != nil {
			return err
		}
		if !c.o.json {
			for _, e := range v.Rules {
				fmt.Fprintf(c.out, "set %s (version %d @ %s); it reaches every node by gossip\n", e.Name, e.Version.Clock, e.Version.Node)
			}
		}
		return nil
	}
	return fmt.Errorf("ctl rules: unknown subcommand %q (list, put, delete)", args[0])
}
