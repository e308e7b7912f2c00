"""``modelops ui``: the fleet web page (live, or written as static files). pages and charts render
(pure, no AWS SDK); data reads the registry through modelops.storage; site routes; server serves."""
