// Package wire holds what the wanda host and the plugin SDK must agree on: the go-plugin
// handshake (magic cookie, application protocol versions), the message size limits, and the
// go-plugin glue that puts the gRPC services of plugins/proto on a connection.
//
// Every plugin serves the Plugin service (Info) plus one of Metric, Pattern (protocol
// versions 1 and 2), Allocation or Refine (version 2); the go-plugin plugin set has the single
// entry "stage". The host offers versions MinProtocolVersion..ProtocolVersion (go-plugin's
// VersionedPlugins); a plugin serves, per version it speaks, a Stage whose Info reports that
// version, and go-plugin picks the highest one both speak. Tensors travel in shared files,
// see package shm; the messages themselves stay far below MaxMsgSize.
package wire
