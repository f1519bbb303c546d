package transport_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// After refusing a request, net/http lingers 500ms before closing the
	// connection, in a goroutine Server.Close does not wait for.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}
