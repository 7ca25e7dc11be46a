// Package bus is NodeX's secure messaging over NATS: request/reply with
// queue groups, JetStream publishing and consuming, every message sealed
// and opened by libs/envelope. A [Client] is one identity on one
// *nats.Conn that the caller opened with that identity's NATS credentials.
//
// The package does not log. Handler errors and rejected messages reach the
// caller through [Config.OnError] and the envelope codec's OnReject hook.
package bus
