"""The scheduler: UTC cron schedules, one claim per slot across schedulers, pauses, and start-up catch-up."""
