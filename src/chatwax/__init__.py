"""chatwax: a stateful chatbot platform on NATS JetStream and Bytewax."""

__version__ = "0.1.0"
