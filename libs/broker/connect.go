package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nodexsec/nodex/libs/identity"
)

// InboxPrefix returns the inbox prefix of identity id, "_INBOX.<id>": the
// only subjects under _INBOX that its permissions let it subscribe to.
func InboxPrefix(id string) string { return "_INBOX." + id }

// Connect opens a NATS connection to url as the identity in creds: nkey
// authentication (the nkey, never the envelope signing key, signs the
// server's nonce), the identity's inbox prefix, its id as the connection
// name, and unlimited reconnects every second. Extra options are applied
// last. The context's deadline, if any, replaces the 5-second timeout of
// the first connection attempt; cancelling the context does not stop it.
func Connect(ctx context.Context, url string, creds *identity.Credentials,
	opts ...nats.Option,
) (*nats.Conn, error) {
	kp, err := creds.NATSKeyPair()
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("reading nkey of %q: %w", creds.ID, err)
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	base := []nats.Option{
		nats.Nkey(pub, kp.Sign),
		nats.CustomInboxPrefix(InboxPrefix(creds.ID)),
		nats.Name(creds.ID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.Timeout(timeout),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s as %q: %w", url, creds.ID, err)
	}

	return nc, nil
}
