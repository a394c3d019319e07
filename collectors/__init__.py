"""Power and energy sources: one module per source, all behind collectors.base.Collector."""
