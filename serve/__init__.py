"""Ray Serve application for unlearned models behind the guard (built by the serving issue)."""
