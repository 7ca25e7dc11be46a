// Package envelope implements NodeX secure messages. Every message between
// NodeX parties is encrypted to its readers and signed by its sender. A
// hostile NATS server can then drop, delay and reorder messages, but it
// cannot read, forge, redirect or usefully replay them.
//
// A sender draws a 32-byte content key K per recipient set (an epoch),
// commits to it with kid = SHA-256("nodex/v1/kc" || K), wraps K to each
// recipient with HPKE (MLKEM768-X25519, HKDF-SHA256, AES-256-GCM) and stores
// the wraps create-only in a [WrapStore]. Each message derives its own
// AES-256-GCM key and nonce from K and a random 16-byte id, uses the binary
// header as associated data, and carries an Ed25519 signature over
// "nodex/v1/envelope\x00" || subject || header || SHA-256(ciphertext).
//
// [Codec.Open] runs the receiver's checks in a fixed order and returns an
// error that wraps one sentinel per reason ([ErrTooLarge] ... [ErrSchema]),
// so callers branch with errors.Is. The wire format and the order of checks
// are specified in schemas/envelope.md.
package envelope
