"""RunPod pods: the GraphQL API client and the backend that starts workers over SSH on pods."""
