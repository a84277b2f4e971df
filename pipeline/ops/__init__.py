"""The operator's side: tools that ask a running collector how it is doing."""
