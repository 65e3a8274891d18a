"""DICOM results into the hospital: Structured Reports, heatmap series, DICOMweb.

A stage after prediction and explanation (imports run `cli` -> `dicom_out` ->
`prediction`, `explain`, `data`): it turns a model's answers on DICOM input
into DICOM objects a PACS viewer shows in the patient's study.

| module | its one job |
|--------|-------------|
| `requirements` | the `[pacs]` extra (highdicom, dicomweb-client) and the message when it is missing |
| `inputs` | DICOM files -> series of image instances (headers only; non-image objects and non-DICOM files named) |
| `results` | a series classified with `prediction.predict_files` (the answer `medivision predict` gives) and its Grad-CAM overlays |
| `writers` | the TID 1500 Structured Report and the Secondary Capture heatmap images (highdicom) |
| `dicomweb` | QIDO-RS / WADO-RS / STOW-RS with credentials from the environment or netrc, TLS on, timeouts, a response size cap |
| `report` | `dicom_report`: files or a DICOMweb study -> written (and stored) objects, with what was stored and what not |

Research use only: nothing here is a certified medical device.

Example:

```python
import medivision_tf
from medivision_tf.dicom_out.report import dicom_report

model = medivision_tf.load_model("runs/x/model.keras")
result = dicom_report(model, ["study/"], out_dir="results")
[obj.path for obj in result.written]     # one SR per series + its heatmap images
```
"""
