"""What every demo service shares: serving, health, reflection and self-registration."""
