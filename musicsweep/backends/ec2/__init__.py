"""EC2 spot instances: config, pricing, launch, user data, the on-instance agent, the wheel.

boto3's EC2 paths are imported only here, and only when the `ec2` backend is used.
"""
