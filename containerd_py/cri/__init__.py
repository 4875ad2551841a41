"""The second front door: the Kubernetes Container Runtime Interface over
gRPC (runtime.v1.RuntimeService and ImageService), on the same supervisor
as the REST API.

It only translates: CRI requests are validated here, pod sandboxes (a CRI
notion the supervisor does not have) are kept here, and every container is
an ordinary supervisor container, labelled as coming from the CRI and so
visible in the REST API too.
"""
