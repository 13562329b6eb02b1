from allocator.policies.fgd import FGD


class TopologyAware(FGD):
    name = "topology"
