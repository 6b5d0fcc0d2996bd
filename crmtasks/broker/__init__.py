"""The Dramatiq layer: the broker, one actor per job, and the middleware every run goes through."""
