"""The worker's shell: the consumer, the store, the dead-letter producer, and what runs them."""
