from allocator.policies.fgd import FGD


class LoadAware(FGD):
    name = "load_aware"
