"""One router per update type; each notifies its type after its transaction commits."""
