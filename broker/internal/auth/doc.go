// Package auth is the bundled broker's security: who a client is and what it may do. It keeps
// SCRAM credentials ([Users], a file in the data directory holding only salted and hashed
// secrets), runs the server side of SASL PLAIN and SCRAM-SHA-256/512 for one connection
// ([Session], for SaslHandshake v0/v1 and SaslAuthenticate v0–v2, including the unframed tokens
// that follow a v0 handshake), builds TLS and mTLS configurations and names the principal of a
// verified client certificate, and stores Kafka-style ACLs ([ACLs], another file in the data
// directory) behind an [Authorizer] whose check costs no allocation, since it runs on every
// request. [RulesFor] says, as data, which operation on which resource each Kafka API needs.
//
// The package knows nothing of sockets or of the broker: the wire server decodes requests with
// kmsg, hands the security ones to the handlers here and asks the Authorizer before serving the
// rest. Both files are written atomically and durably (temporary file, fsync, rename, directory
// fsync), so a crash leaves either the old or the new contents.
package auth
