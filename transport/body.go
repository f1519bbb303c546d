package transport

import (
	"net/http"
	"strconv"
	"strings"
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
