package transport

import (
	"encoding/base64"
	"net/http"
)

// Keyring manages the gossip keys of a node. Its methods do not block.
type Keyring interface {
	Keys() ([][]byte, error)
	InstallKey(key []byte) error
	UseKey(key []byte) error
	RemoveKey(key []byte) error
}

// keyJSON is the body of POST /v1/keyring/{op}.
type keyJSON struct {
	Key string `json:"key"`
}

// keyringHandler serves GET /v1/keyring and POST /v1/keyring/{op} with
// {"key": "<base64>"}, op being install, use or remove.
func keyringHandler(k Keyring) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/keyring", func(w http.ResponseWriter, _ *http.Request) {
		keys, err := k.Keys()
		if err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		out := struct {
			Primary string   `json:"primary"`
			Keys    []string `json:"keys"`
		}{Keys: []string{}}
		for i, key := range keys {
			enc := base64.StdEncoding.EncodeToString(key)
			if i == 0 {
				out.Primary = enc
			}
			out.Keys = append(out.Keys, enc)
		}
		writeValue(w, http.StatusOK, out)
	})
	ops := map[string]func([]byte) error{"install": k.InstallKey, "use": k.UseKey, "remove": k.RemoveKey}
	keyBody := newBodyDecoder(&keyJSON{})
	mux.HandleFunc("POST /v1/keyring/{op}", func(w http.ResponseWriter, r *http.Request) {
		op, ok := ops[r.PathValue("op")]
		if !ok {
			writeError(w, http.StatusNotFound, "op: want install, use or remove")
			return
		}
		var req keyJSON
		body, err := readBody(http.MaxBytesReader(w, r.Body, 4096), nil)
		if err == nil {
			err = keyBody.decode(body, &req)
		}
		if err != nil {
			code, msg := status(err)
			writeError(w, code, msg)
			return
		}
		key, err := base64.StdEncoding.DecodeString(req.Key)
		if err != nil || req.Key == "" {
			writeError(w, http.StatusBadRequest, "key: must be a base64 key of 16, 24 or 32 bytes")
			return
		}
		if err := op(key); err != nil {
			writeError(w, http.StatusBadRequest, "key: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	})
	return mux
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeValue(w, code, struct {
		Error string `json:"error"`
	}{msg})
}
