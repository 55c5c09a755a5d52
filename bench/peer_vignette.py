"""pytorch-tabnet side of the vignette study (bench/vignette_study.R).

    PYTHONPATH=bench/.peer /usr/bin/python3 bench/peer_vignette.py IN_DIR OUT.json

IN_DIR holds <name>.csv files (columns V01..V10 and y = yes/no) written by
vignette_study.R. Each is fitted with TabNetClassifier at its defaults and
max_epochs = 10 (the vignette's `tabnet_fit(y ~ ., syn, epochs = 10)`; no
eval set, so no early stopping), seed from the file name (<set>-seed<k>.csv),
1 thread; the fit-time feature_importances_ (mask importance on the training
rows) and accuracy on <name>.test.csv are written as JSON.
"""
import glob
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _benchcommon as bc  # noqa: E402

bc.set_thread_env(1)
torch = bc.import_torch()
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pytorch_tabnet.tab_model import TabNetClassifier  # noqa: E402

torch.set_num_threads(1)
# without an eval set pytorch-tabnet warns on every fit that it will not stop early
warnings.filterwarnings("ignore", message="No early stopping")
in_dir, out_path = sys.argv[1], sys.argv[2]
results = []
for path in sorted(glob.glob(os.path.join(in_dir, "*-seed*.csv"))):
    if path.endswith(".test.csv"):
        continue
    name = os.path.basename(path)[:-4]
    seed = int(name.split("-seed")[1])
    d = pd.read_csv(path)
    cols = [c for c in d.columns if c != "y"]
    x = d[cols].to_numpy(np.float32)
    y = (d["y"] == "yes").to_numpy(np.int64)
    clf = TabNetClassifier(seed=seed, verbose=0)
    clf.fit(x, y, max_epochs=10)
    t = pd.read_csv(path[:-4] + ".test.csv")
    acc = float(np.mean(clf.predict(t[cols].to_numpy(np.float32)) == (t["y"] == "yes").to_numpy(np.int64)))
    results.append({"name": name, "seed": seed, "variables": cols,
                    "importance": [float(v) for v in clf.feature_importances_], "accuracy": acc})
with open(out_path, "w") as f:
    json.dump({"tool": "pytorch-tabnet", "results": results}, f)
