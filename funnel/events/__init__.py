"""The durable event log of interactions and impressions."""
