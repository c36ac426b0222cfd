"""The built-in runners: lmtp -> in -> pipeline -> out, with retry, and a REST status API."""
