"""Components of the resnet50_3d_ldam bundle: MedicalNet-layout ResNet50, weight loader, LDAM + DRW losses."""
