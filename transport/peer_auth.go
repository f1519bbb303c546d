package transport

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Peer connections are authenticated with the gossip keyring: a process
// that can reach the peer port but holds no installed key gets nothing.
// Each side proves it holds a key by an HMAC over both sides' random
// nonces; any installed key is accepted, so keys rotate without breaking
// connections. The auth key is derived from the gossip key, never the key
// itself. Frames after the handshake are authenticated by the connection,
// not encrypted: peer traffic belongs on a private network, as gossip's.
//
//	server → client: magic "SLP1", keyed (1 byte: 1 if a key is required), nonceS (32 bytes)
//	client → server: nonceC (32), HMAC(k, "client" | nonceS | nonceC) (32; zeros if unkeyed)
//	server → client: HMAC(k, "server" | nonceC | nonceS) (keyed only)
//
// Both sides must agree on being keyed: a node with keys never talks to a
// peer without (no downgrade), and a node without keys cannot talk to a
// keyed cluster. With no keys (unencrypted gossip, allowed explicitly) the
// proofs are skipped.

const (
	peerMagic      = "SLP1"
	nonceBytes     = 32
	handshakeLimit = 5 * time.Second
)

// ErrPeerAuth is a peer that could not prove it holds a cluster key.
var ErrPeerAuth = errors.New("transport: peer authentication failed")

func authKey(gossipKey []byte) []byte {
	m := hmac.New(sha256.New, gossipKey)
	m.Write([]byte("sluice peer auth v1"))
	return m.Sum(nil)
}

func proof(gossipKey []byte, role string, a, b []byte) []byte {
	m := hmac.New(sha256.New, authKey(gossipKey))
	m.Write([]byte(role))
	m.Write(a)
	m.Write(b)
	return m.Sum(nil)
}

// verify reports which installed key made mac, if any.
func verify(keys [][]byte, mac []byte, role string, a, b []byte) ([]byte, bool) {
	for _, k := range keys {
		if hmac.Equal(mac, proof(k, role, a, b)) {
			return k, true
		}
	}
	return nil, false
}

func keyedByte(keys [][]byte) byte {
	if len(keys) > 0 {
		return 1
	}
	return 0
}

func nonce() []byte {
	b := make([]byte, nonceBytes)
	if _, err := rand.Read(b); err != nil {
		panic("transport: no randomness: " + err.Error())
	}
	return b
}

// serverHandshake authenticates the client on conn.
func serverHandshake(conn net.Conn, keys [][]byte) error {
	conn.SetDeadline(time.Now().Add(handshakeLimit))
	defer conn.SetDeadline(time.Time{})
	ns := nonce()
	hello := append([]byte(peerMagic), keyedByte(keys))
	if _, err := conn.Write(append(hello, ns...)); err != nil {
		return err
	}
	in := make([]byte, nonceBytes+sha256.Size)
	if _, err := io.ReadFull(conn, in); err != nil {
		return err
	}
	nc := in[:nonceBytes]
	if len(keys) == 0 {
		return nil
	}
	key, ok := verify(keys, in[nonceBytes:], "client", ns, nc)
	if !ok {
		return ErrPeerAuth
	}
	_, err := conn.Write(proof(key, "server", nc, ns))
	return err
}

// clientHandshake authenticates the server on conn, proving this side's key.
func clientHandshake(conn net.Conn, keys [][]byte) error {
	defer conn.SetDeadline(time.Time{}) // the caller sets the deadline
	hello := make([]byte, len(peerMagic)+1+nonceBytes)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return err
	}
	if string(hello[:len(peerMagic)]) != peerMagic {
		return fmt.Errorf("%w: not a sluice peer", ErrPeerAuth)
	}
	if hello[len(peerMagic)] != keyedByte(keys) {
		return fmt.Errorf("%w: one side has a cluster key and the other has none", ErrPeerAuth)
	}
	ns := hello[len(peerMagic)+1:]
	nc := nonce()
	out := append(nc, make([]byte, sha256.Size)...)
	if len(keys) > 0 {
		out = append(nc, proof(keys[0], "client", ns, nc)...)
	}
	if _, err := conn.Write(out); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	mac := make([]byte, sha256.Size)
	if _, err := io.ReadFull(conn, mac); err != nil {
		return fmt.Errorf("%w: %v", ErrPeerAuth, err)
	}
	if _, ok := verify(keys, mac, "server", nc, ns); !ok {
		return ErrPeerAuth
	}
	return nil
}
