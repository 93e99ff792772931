"""Names and limits of the BraTS 2018 training-set layout that the generator reproduces.

Kept in one place because the renderer (which modalities exist), the writers (file and folder
names) and the dataset driver (grades, case limits) must all agree on them, and the bundles read
the same layout from real BraTS data.
"""

from __future__ import annotations

DATASET_DIRNAME = "MICCAI_BraTS_2018_Data_Training"
MODALITIES = ("t1", "t1ce", "t2", "flair")
GRADES = ("HGG", "LGG")
SEG_LABELS = (0, 1, 2, 4)
SURVIVAL_FILENAME = "survival_data.csv"
SURVIVAL_HEADER = ("BraTS18ID", "Age", "Survival", "ResectionStatus")
NOTICE_FILENAME = "MNI152_NOTICE.txt"
#: Cases are numbered 1..N with four digits, so at most 9999 cases fit the naming scheme.
MAX_CASES = 9999
