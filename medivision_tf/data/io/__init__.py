"""The `io` stage: image files -> pixels.

Everything between a file on disk and the pixels a model gets lives here,
and nothing here knows about sample tables, splits or datasets:

| module | its one job |
|--------|-------------|
| `sniff` | the format of a file's first bytes (`DICM` at byte 128 wins) |
| `frame_paths` | `"x.dcm#frame=3"` paths naming one frame or slice |
| `options` | the allowed decode options and their checks (window, 16-bit mode, frames, axis, size, channels) |
| `regular_files` | reading only regular files (never a FIFO or device) |
| `headers` | image sizes from file headers, the Python half of the pixel budget |
| `budget` | the pixel budget in the graph (PNG/GIF/BMP/JPEG headers) |
| `memory_budget` | the memory budget of medical files before decompressing: NIfTI dims x dtype (`.nii.gz` inflated as a capped stream), capped inflate, `TooLargeError` |
| `dicom_budget` | DICOM headers without inflating a deflated file's pixels, Rows x Columns x frames x bytes, compressed frames' code-stream sizes |
| `scaling` | any pixel values -> uint8 0-255 (16-bit, 12-bit, min..max) |
| `dicom`, `tiff`, `nifti` | the Python readers (pydicom, tifffile, nibabel) |
| `python_decode` | TIFF/DICOM/NIfTI bytes -> pixels: the Python readers' one entry |
| `graph_decode` | `decode_image` / `load_image`: one file decoded in the `tf.data` graph |
| `finish` | `finish_image`: channels, resize, round: an image as the model gets it |
| `read_files` | `load_images` / `read_images`: files read outside `tf.data` (prediction, explanation) |
| `sample_reader` | `read_samples`: a stream of sample paths -> finished images, the fastest decoder for a table |

The public names are exported by `medivision_tf.data` (`load_image`,
`decode_image`, `finish_image`, `load_images`, `read_images`, `read_dicom`,
`read_tiff`, `read_nifti`, `sniff_format`, ...). `sniff`, `frame_paths`,
`options`, `regular_files`, `headers`, `memory_budget`, `dicom_budget`, `scaling`
and the three readers import
neither TensorFlow nor Keras.

Example:

```python
from medivision_tf.data.io.graph_decode import load_image
from medivision_tf.data.io.finish import finish_image

image = load_image("scan.dcm", channels=1)       # (H, W, 1) float32, 0-255
ready = finish_image(image, 224, channels=3)      # (224, 224, 3)
```
"""
