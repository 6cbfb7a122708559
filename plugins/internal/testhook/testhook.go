// Package testhook lets the test-only faulty plugin make the SDK misbehave in ways a correct
// plugin cannot: announce another protocol version, report an unknown kind, or skip writing
// its result. The SDK reads these fields once, when it starts serving; nothing else sets them.
package testhook

// Hooks alter the SDK's behaviour; the zero value changes nothing.
var Hooks struct {
	// HandshakeVersion, when non-zero, replaces the go-plugin application protocol version.
	HandshakeVersion uint
	// InfoProtocolVersion, when non-zero, replaces protocol_version in the Info reply.
	InfoProtocolVersion uint32
	// InfoKind, when non-zero, replaces kind in the Info reply.
	InfoKind int32
	// SkipWrite makes the SDK reply as if it had written the result, without writing it.
	SkipWrite bool
}
