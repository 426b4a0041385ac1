"""Result delivery: signed webhooks with retries (polling lives in app/jobs)."""
