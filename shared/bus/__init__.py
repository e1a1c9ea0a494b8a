"""Event publishing behind one interface: Pub/Sub on Google Cloud, the local dispatcher otherwise."""
