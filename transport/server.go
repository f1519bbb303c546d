package transport

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// ServerConfig configures a Server. Zero fields mean defaults.
type ServerConfig struct {
	// Limiter decides the checks. Required.
	Limiter Limiter
	// DenyStatus is the status of a denied check. If zero, defaults to 429;
	// 403 suits nginx auth_request, which treats only 401 and 403 as denial.
	DenyStatus int
	// MaxWait is the longest max_wait /v1/wait accepts. If zero, defaults
	// to 30s.
	MaxWait time.Duration
	// MaxBodyBytes bounds the body of a check or wait. If zero, defaults to
	// 64 KiB. A batch may be 16 times larger.
	MaxBodyBytes int64
	// Logger receives internal errors. If nil, they are discarded.
	Logger *slog.Logger
	// Registerer receives the HTTP metrics. If nil, they are not registered.
	Registerer prometheus.Registerer
	// Membership answers GET /v1/cluster. If nil, the endpoint is absent.
	Membership Membership
	// Rules serves /v1/rules. If nil, the endpoints are absent.
	Rules RulesAPI
	// Tracer starts a span for each check, batch and wait, the child of
	// the W3C traceparent header if the request has one; the Limiter adds
	// its attributes to it. If nil, tracing is off.
	Tracer trace.TracerProvider
}

// Server is the local HTTP API. It is safe for concurrent use.
type Server struct {
	cfg      ServerConfig
	tracer   trace.Tracer // nil: tracing off
	mux      *http.ServeMux
	requests *prometheus.HistogramVec
	bufs     sync.Pool // of *[]byte, for request and response bodies
	batches  sync.Pool // of *batchScratch, for the checks of a batch

	checkBody, batchBody, rulesBody bodyDecoder
}

// NewServer returns a Server for cfg.
func NewServer(cfg ServerConfig) *Server {
	if cfg.DenyStatus == 0 {
		cfg.DenyStatus = http.StatusTooManyRequests
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 30 * time.Second
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg,
		mux: http.NewServeMux(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_http_request_duration_seconds",
			Help:    "Time to answer API requests, by endpoint and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5, 1, 5},
		}, []string{"endpoint", "code"}),
		checkBody: newBodyDecoder(&checkJSON{}),
		batchBody: newBodyDecoder(&batchJSON{}),
		rulesBody: newBodyDecoder(&putRulesJSON{}),
	}
	if cfg.Tracer != nil {
		s.tracer = cfg.Tracer.Tracer("github.com/sluicerl/sluice/transport")
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.requests)
	}
	s.handle("POST /v1/check", "check", s.postCheck)
	s.handle("GET /v1/check", "check", s.getCheck)
	s.handle("POST /v1/check/batch", "batch", s.batch)
	s.handle("POST /v1/wait", "wait", s.wait)
	if cfg.Membership != nil {
		s.handle("GET /v1/cluster", "cluster", s.cluster)
	}
	if cfg.Rules != nil {
		s.handle("GET /v1/rules", "rules", s.listRules)
		s.handle("PUT /v1/rules", "rules", s.putRules)
		s.handle("PUT /v1/rules/{name}", "rules", s.putRules)
		s.handle("DELETE /v1/rules/{name}", "rules", s.deleteRule)
	}
	return s
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handler serves one endpoint and returns the status it wrote.
type handler func(w http.ResponseWriter, r *http.Request) int

func (s *Server) handle(pattern, endpoint string, h handler) {
	// Every status the API writes, resolved once: no lookup per request.
	byCode := map[int]prometheus.Observer{}
	for _, code := range []int{200, 400, 413, statusClientClosed, 500, 503, s.cfg.DenyStatus} {
		byCode[code] = s.requests.WithLabelValues(endpoint, strconv.Itoa(code))
	}
	traced := s.tracer != nil && tracedEndpoint(endpoint)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var span trace.Span
		if traced {
			r, span = s.startSpan(r, pattern)
		}
		code := h(w, r)
		if span != nil {
			endSpan(span, code)
		}
		o, ok := byCode[code]
		if !ok {
			o = s.requests.WithLabelValues(endpoint, strconv.Itoa(code))
		}
		o.Observe(time.Since(start).Seconds())
	})
}

// decode reads r's body, at most limit bytes, and decodes it into v with d.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, limit int64, d bodyDecoder, v any) error {
	buf := s.getBuf()
	defer s.putBuf(buf) // v holds copies: encoding/json copies every string
	body, err := readBody(http.MaxBytesReader(w, r.Body, limit), *buf)
	*buf = body
	if err != nil {
		return err
	}
	return d.decode(body, v)
}

func (s *Server) postCheck(w http.ResponseWriter, r *http.Request) int {
	var c checkJSON
	in := requestFormat(r)
	if err := s.decodeCheck(w, r, in, &c); err != nil {
		return s.fail(w, err)
	}
	return s.check(r.Context(), w, &c, answerFormat(r, in))
}

func (s *Server) getCheck(w http.ResponseWriter, r *http.Request) int {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// r.URL.Query() would drop the parameter it could not decode.
		return s.fail(w, badField("query", "%v", err))
	}
	c, err := queryCheck(q)
	if err != nil {
		return s.fail(w, err)
	}
	return s.check(r.Context(), w, &c, formatJSON)
}

func (s *Server) check(ctx context.Context, w http.ResponseWriter, c *checkJSON, out bodyFormat) int {
	req, _, err := c.request(false, 0)
	if err != nil {
		return s.fail(w, err)
	}
	res, err := s.cfg.Limiter.Check(ctx, &req)
	if err != nil {
		return s.fail(w, err)
	}
	return s.answer(w, &res, false, out)
}

func (s *Server) wait(w http.ResponseWriter, r *http.Request) int {
	var c checkJSON
	in := requestFormat(r)
	if err := s.decodeCheck(w, r, in, &c); err != nil {
		return s.fail(w, err)
	}
	req, maxWait, err := c.request(true, s.cfg.MaxWait)
	if err != nil {
		return s.fail(w, err)
	}
	// The call may be held for up to maxWait: let the answer out after it.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(maxWait + writeTimeout))
	res, err := s.cfg.Limiter.Wait(r.Context(), &req, maxWait)
	if err != nil {
		return s.fail(w, err)
	}
	return s.answer(w, &res, true, answerFormat(r, in))
}

func (s *Server) batch(w http.ResponseWriter, r *http.Request) int {
	sc := s.getBatch()
	defer s.putBatch(sc)
	b := &sc.batch
	in := requestFormat(r)
	if err := s.decodeBatch(w, r, in, b); err != nil {
		return s.fail(w, err)
	}
	if len(b.Checks) == 0 || len(b.Checks) > MaxBatch {
		return s.fail(w, badField("checks", "must hold between 1 and %d checks, got %d", MaxBatch, len(b.Checks)))
	}
	reqs := sc.requests(len(b.Checks))
	for i := range b.Checks {
		var err error
		if reqs[i], _, err = b.Checks[i].request(false, 0); err != nil {
			return s.fail(w, rules.PrefixField(err, "checks["+strconv.Itoa(i)+"]."))
		}
	}
	results, err := s.cfg.Limiter.CheckBatch(r.Context(), reqs)
	if err != nil {
		return s.fail(w, err)
	}
	buf := s.getBuf()
	defer s.putBuf(buf)
	if out := answerFormat(r, in); out == formatMsgpack {
		*buf = mpAppendArrayLen(append(*buf, 0x81, 0xa7, 'r', 'e', 's', 'u', 'l', 't', 's'), len(results)) // {"results": [...]}
		for i := range results {
			*buf = appendResultMsgpack(*buf, &results[i], false)
		}
		return writeBody(w, http.StatusOK, out, *buf)
	}
	*buf = append(*buf, `{"results":[`...)
	for i := range results {
		if i > 0 {
			*buf = append(*buf, ',')
		}
		*buf = appendResult(*buf, &results[i], false)
	}
	*buf = append(*buf, "]}\n"...)
	return writeJSON(w, http.StatusOK, *buf)
}

// answer writes a decision with its status and RateLimit headers.
func (s *Server) answer(w http.ResponseWriter, res *cluster.Result, waited bool, out bodyFormat) int {
	h := w.Header()
	h["Ratelimit-Policy"] = []string{policyHeader(res)}
	h["Ratelimit"] = []string{rateLimitHeader(res)}
	if res.Shadow {
		v := "allow"
		if res.ShadowDenied {
			v = "deny"
		}
		h["Sluice-Shadow"] = []string{v}
	}
	code := http.StatusOK
	if !res.Allowed {
		code = s.cfg.DenyStatus
		if !res.TooLarge {
			h["Retry-After"] = []string{strconv.FormatInt(ceilSeconds(res.RetryAfter), 10)}
		}
	}
	buf := s.getBuf()
	defer s.putBuf(buf)
	if out == formatMsgpack {
		*buf = appendResultMsgpack(*buf, res, waited)
		return writeBody(w, code, out, *buf)
	}
	*buf = append(appendResult(*buf, res, waited), '\n')
	return writeJSON(w, code, *buf)
}

// fail writes err as a JSON error with the status status gives it.
func (s *Server) fail(w http.ResponseWriter, err error) int {
	code, msg := status(err)
	if code >= 500 {
		s.cfg.Logger.Error("api request failed", "err", err)
	}
	if code == statusClientClosed {
		return code // nobody is listening
	}
	buf := s.getBuf()
	defer s.putBuf(buf)
	*buf = append(*buf, `{"error":`...)
	*buf = appendJSONString(*buf, msg)
	*buf = append(*buf, "}\n"...)
	return writeJSON(w, code, *buf)
}

// statusClientClosed is nginx's code for a client that went away; it is
// recorded in metrics, never sent.
const statusClientClosed = 499

// status maps an error to an HTTP status and the message the client sees.
// It is the one place where errors become statuses.
func status(err error) (int, string) {
	var fe *rules.FieldError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "body: larger than " + strconv.FormatInt(mbe.Limit, 10) + " bytes"
	case errors.As(err, &fe):
		return http.StatusBadRequest, fe.Error()
	case errors.Is(err, rules.ErrNoRule):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, cluster.ErrRulesReadOnly):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, cluster.ErrNotReady):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, context.Canceled):
		return statusClientClosed, "client closed request"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "deadline exceeded"
	}
	return http.StatusInternalServerError, "internal error"
}

// writeValue writes v as a JSON body, or a 500 if it does not encode.
func writeValue(w http.ResponseWriter, code int, v any) int {
	body, err := json.Marshal(v)
	if err != nil {
		return writeJSON(w, http.StatusInternalServerError, []byte(`{"error":"internal error"}`+"\n"))
	}
	return writeJSON(w, code, append(body, '\n'))
}

func writeJSON(w http.ResponseWriter, code int, body []byte) int {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	_, _ = w.Write(body) // a client that went away is not our error
	return code
}

func (s *Server) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 512)
	return &b
}

func (s *Server) putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // do not keep a batch-sized buffer for single checks
	}
	*b = (*b)[:0]
	s.bufs.Put(b)
}
