// Package wire holds what the wanda host and the plugin SDK must agree on: the go-plugin
// handshake (magic cookie, application protocol version), the message size limits, and the
// go-plugin glue that puts the gRPC services of plugins/proto on a connection.
//
// Every plugin serves the Plugin service (Info) plus the Metric or the Pattern service; the
// go-plugin plugin set has the single entry "stage". Tensors travel in shared files, see
// package shm; the messages themselves stay far below MaxMsgSize.
package wire
