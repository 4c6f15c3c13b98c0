"""aiohttp building blocks every service's HTTP app uses."""
