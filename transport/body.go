package transport

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/sluicerl/sluice/cluster"
)

// MsgpackType is the media type of msgpack bodies. A check, batch or wait
// sent with Content-Type: application/msgpack is decoded as msgpack; an
// answer is msgpack when the request's Accept names it, or when the request
// was msgpack and has no Accept. Errors are always JSON.
const MsgpackType = "application/msgpack"

// bodyFormat is the format of a request or answer body.
type bodyFormat uint8

const (
	formatJSON bodyFormat = iota
	formatMsgpack
)

// requestFormat is the format of r's body: msgpack if its Content-Type
// says so, JSON otherwise (curl's -d sends a form type: it is JSON here, as
// it always was).
func requestFormat(r *http.Request) bodyFormat {
	if v := r.Header["Content-Type"]; len(v) > 0 && isMediaType(v[0], MsgpackType) {
		return formatMsgpack
	}
	return formatJSON
}

// answerFormat is the format of the answer to r, whose body was in.
func answerFormat(r *http.Request, in bodyFormat) bodyFormat {
	accept := r.Header["Accept"]
	if len(accept) == 0 {
		return in
	}
	for _, v := range accept {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			if isMediaType(item, MsgpackType) {
				return formatMsgpack
			}
		}
	}
	return formatJSON
}

// isMediaType reports whether the header value v (parameters allowed) is
// the media type t, in any letter case.
func isMediaType(v, t string) bool {
	v, _, _ = strings.Cut(v, ";")
	return strings.EqualFold(strings.TrimSpace(v), t)
}

// decodeCheck reads a check or wait body into c, in the request's format.
func (s *Server) decodeCheck(w http.ResponseWriter, r *http.Request, in bodyFormat, c *checkJSON) error {
	buf := s.getBuf()
	defer s.putBuf(buf) // c holds copies of the strings
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), *buf)
	*buf = body
	if err != nil {
		return err
	}
	if in == formatMsgpack {
		return decodeCheckMsgpack(body, c)
	}
	if fastCheckJSON(body, c) {
		return nil
	}
	*c = checkJSON{}
	return s.checkBody.decode(body, c)
}

// decodeBatch reads a batch body into b, in the request's format.
func (s *Server) decodeBatch(w http.ResponseWriter, r *http.Request, in bodyFormat, b *batchJSON) error {
	buf := s.getBuf()
	defer s.putBuf(buf)
	body, err := readBody(http.MaxBytesReader(w, r.Body, 16*s.cfg.MaxBodyBytes), *buf)
	*buf = body
	if err != nil {
		return err
	}
	if in == formatMsgpack {
		return decodeBatchMsgpack(body, b)
	}
	if fastBatchJSON(body, b) {
		return nil
	}
	*b = batchJSON{}
	return s.batchBody.decode(body, b)
}

// writeBody writes an answer body in format f.
func writeBody(w http.ResponseWriter, code int, f bodyFormat, body []byte) int {
	if f == formatJSON {
		return writeJSON(w, code, body)
	}
	h := w.Header()
	h["Content-Type"] = []string{MsgpackType}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	_, _ = w.Write(body)
	return code
}

// batchScratch holds a batch's decoded checks and requests between
// batches, so that a busy API does not allocate them for each one. The
// decoders reuse batch.Checks when it is large enough.
type batchScratch struct {
	batch batchJSON
	reqs  []cluster.Request
}

// requests returns n zeroed requests.
func (sc *batchScratch) requests(n int) []cluster.Request {
	if cap(sc.reqs) < n {
		sc.reqs = make([]cluster.Request, n)
	}
	sc.reqs = sc.reqs[:n]
	clear(sc.reqs)
	return sc.reqs
}

func (s *Server) getBatch() *batchScratch {
	if sc, ok := s.batches.Get().(*batchScratch); ok {
		return sc
	}
	return &batchScratch{}
}

// putBatch keeps sc for the next batch, emptied: what it referred to (keys,
// descriptors) is not kept alive by the pool.
func (s *Server) putBatch(sc *batchScratch) {
	clear(sc.batch.Checks[:cap(sc.batch.Checks)])
	sc.batch.Checks = sc.batch.Checks[:0]
	clear(sc.reqs[:cap(sc.reqs)])
	sc.reqs = sc.reqs[:0]
	s.batches.Put(sc)
}

// checksFor returns room for n checks, zeroed, reusing b's when it can.
func (b *batchJSON) checksFor(n int) []checkJSON {
	if cap(b.Checks) >= n {
		c := b.Checks[:n]
		clear(c)
		return c
	}
	return make([]checkJSON, n)
}
