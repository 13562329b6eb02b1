from allocator.policies.fgd import FGD


class RiskAware(FGD):
    name = "risk_aware"
