"""The hub: ``UpdateService`` (front), the sequencers that number updates (local or through
a broker, with its outbox and replay log), the publish-only ``Publisher``, statistics, and
the process integration (signals, GC freezing, worker-process detection)."""
