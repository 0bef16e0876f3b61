"""The cluster manager: classic Swarm's model with its state in etcd.

  scheduler/   pure placement (filters, strategies, constraint grammar)
  store        the etcd layout: nodes, health leases, desired containers, names
  join         `berth cluster join`: a node's registration and health lease
  view         the nodes as the manager sees them (clients, listings, scheduler snapshots)
  manager      scheduling with desired state, leader election, rescheduling
  containers   system, images, volumes: the Engine API backends, forwarding through berth's client
  system
  networks     global (overlay) networks once for the cluster, local ones as <node>/<name>
  streams      proxying hijacked and streamed responses
  serve, main  the processes; demo: `berth cluster demo`; lab: etcd on the netns hosts' segment
Never imports the engine (import-linter contract): nodes are reached through berth.client only.
"""
