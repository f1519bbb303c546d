package transport

import (
	"fmt"
	"io"
	"net"
	"time"
)

// Closing a connection from the server's side. A server that just closed a
// connection could race a check being sent on it: the client could not
// tell whether the owner had decided that check, so it could neither send
// it again (it might be counted twice) nor do better than fail it (the
// check falls back to the fair share). So the server asks instead:
//
//   - It stops deciding, writes a goaway frame naming the last batch it
//     answered, and reads and discards whatever comes after it until the
//     client closes, or goAwayLimit passes.
//   - The client takes the connection out of use, closes it, and queues
//     again every batch it has no answer to (all sent after that last
//     one, none decided), to be sent on a new connection; a batch about
//     to be written when the goaway arrives goes on a new connection too.
//
// Batch ids rise on a connection and answers come in order, so nothing is
// decided twice and nothing fails for the close. A client of an older
// release takes the goaway frame for a malformed one and closes the
// connection as broken: what it had in flight falls back, as it did when
// the server closed without asking.

// goAwayLimit bounds how long a server waits for a client it asked to close
// a connection to do so, and the write of the goaway frame.
const goAwayLimit = 5 * time.Second

// goAway asks the peer on conn to close it, last being the id of the last
// batch answered on it, and returns once the peer has closed it, or after
// goAwayLimit.
func (s *PeerServer) goAway(conn net.Conn, w *frameWriter, last uint64) {
	conn.SetDeadline(time.Now().Add(goAwayLimit))
	if w.write(conn, frameGoAway, &peerGoAway{peerHandoffAck{id: last}}) != nil {
		return
	}
	io.Copy(io.Discard, conn) // not decided: the client sends it again
}

// goAway takes conn, which the peer asked to close after answering the
// batch last, out of use and closes it; the batches still pending on it
// are queued again, to go on a new connection.
func (pc *peerConn) goAway(conn net.Conn, last uint64) {
	pc.mu.Lock()
	if pc.conn != conn { // dropped meanwhile, its calls finished
		pc.mu.Unlock()
		conn.Close()
		return
	}
	pc.conn, pc.released = nil, conn
	pending := pc.pending
	pc.pending = map[uint64][]*call{}
	pc.mu.Unlock()
	conn.Close()
	pc.c.open.Add(-1)
	pc.c.closes.WithLabelValues(closedGoAway).Inc()
	for id, calls := range pending {
		if id <= last { // answered, says the peer, yet no answer came
			pc.finish(calls, callResult{err: fmt.Errorf("%w: %s closed the connection without answering batch %d", ErrPeerUnavailable, pc.addr, id)})
			continue
		}
		for _, cl := range calls {
			pc.requeue(cl)
		}
	}
}

// requeue queues cl again, unless pc has ended. The queue has room: it
// holds MaxInFlight calls, and cl's checks are still counted in flight.
// If pc ends just as cl is queued, run may already have failed what was
// queued and returned, so requeue fails what is left itself: else cl
// would wait in the queue until its caller gave up.
func (pc *peerConn) requeue(cl *call) {
	if !pc.ended() {
		select {
		case pc.queue <- cl:
			pc.c.resent.Add(float64(len(cl.checks)))
			if pc.ended() {
				pc.failQueued()
			}
			return
		default:
		}
	}
	pc.finish([]*call{cl}, callResult{err: fmt.Errorf("%w: %s closed the connection; not sent again", ErrPeerUnavailable, pc.addr)})
}
